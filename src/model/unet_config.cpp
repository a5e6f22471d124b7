#include "sdxl_dreambooth/model/unet_config.h"

#include "sdxl_dreambooth/error.h"

#include <algorithm>

namespace sdxl::model {

// ref: diffusers 0.27 UNet2DConditionModel.__init__ and its argument checks.
UNetConfig UNetConfig::from_json(const JsonConfig& j) {
  UNetConfig c;
  const std::string cls = j.string_or("_class_name", "UNet2DConditionModel");
  if (cls != "UNet2DConditionModel") j.unsupported("_class_name", "expected UNet2DConditionModel");
  c.in_channels = j.int_in("in_channels", 4, 1, kMaxChannels);
  c.out_channels = j.int_in("out_channels", 4, 1, kMaxChannels);
  c.center_input_sample = j.bool_or("center_input_sample", false);
  c.flip_sin_to_cos = j.bool_or("flip_sin_to_cos", true);
  c.freq_shift = j.int_in("freq_shift", 0, 0, 16);
  c.down_block_types = j.require_string_list("down_block_types");
  c.up_block_types = j.require_string_list("up_block_types");
  c.mid_block_type = j.string_or("mid_block_type", "UNetMidBlock2DCrossAttn");
  c.block_out_channels = j.int_list_in("block_out_channels", 1, kMaxChannels);
  const std::size_t n = c.down_block_types.size();
  j.require(n <= static_cast<std::size_t>(kMaxBlocks), "down_block_types",
            "at most " + std::to_string(kMaxBlocks) + " blocks");
  if (n == 0 || c.block_out_channels.size() != n || c.up_block_types.size() != n) {
    throw Error("'" + j.source() + "': down_block_types, up_block_types and block_out_channels must have the same "
                "non-zero length");
  }
  for (const auto& t : c.down_block_types) {
    if (t != "DownBlock2D" && t != "CrossAttnDownBlock2D") j.unsupported("down_block_types", "unknown block " + t);
  }
  for (const auto& t : c.up_block_types) {
    if (t != "UpBlock2D" && t != "CrossAttnUpBlock2D") j.unsupported("up_block_types", "unknown block " + t);
  }
  if (c.mid_block_type != "UNetMidBlock2DCrossAttn") j.unsupported("mid_block_type", "expected UNetMidBlock2DCrossAttn");
  c.layers_per_block = j.int_or_list_in("layers_per_block", n, 2, 1, kMaxLayers);
  c.transformer_layers_per_block = j.int_or_list_in("transformer_layers_per_block", n, 1, 1, kMaxLayers);
  if (j.has("reverse_transformer_layers_per_block")) {
    j.unsupported("reverse_transformer_layers_per_block", "only null (the reverse of transformer_layers_per_block)");
  }
  c.reverse_transformer_layers_per_block.assign(c.transformer_layers_per_block.rbegin(),
                                                c.transformer_layers_per_block.rend());
  // diffusers' naming quirk: when num_attention_heads is null, attention_head_dim holds the
  // number of heads (SDXL's config relies on this).
  if (j.has("num_attention_heads")) {
    j.unsupported("num_attention_heads", "diffusers 0.27 rejects it for UNet2DConditionModel; use attention_head_dim");
  }
  c.num_attention_heads = j.int_or_list_in("attention_head_dim", n, 8, 1, kMaxHeads);
  c.cross_attention_dim = j.int_or_list_in("cross_attention_dim", n, 1280, 1, kMaxChannels);
  c.downsample_padding = j.int_in("downsample_padding", 1, 0, 8);
  c.mid_block_scale_factor = j.float_in("mid_block_scale_factor", 1.0, 0.0, 1e6, true);
  c.norm_num_groups = j.int_in("norm_num_groups", 32, 1, kMaxGroups);
  c.norm_eps = j.float_in("norm_eps", 1e-5, 0.0, 1.0, true);
  c.use_linear_projection = j.bool_or("use_linear_projection", false);
  c.upcast_attention = j.bool_or("upcast_attention", false);
  c.addition_embed_type = j.string_or("addition_embed_type", "");
  if (!c.addition_embed_type.empty() && c.addition_embed_type != "text_time") {
    j.unsupported("addition_embed_type", "only null or \"text_time\"");
  }
  c.addition_time_embed_dim = j.int_in("addition_time_embed_dim", 0, 0, kMaxChannels);
  c.projection_class_embeddings_input_dim = j.int_in("projection_class_embeddings_input_dim", 0, 0, 8 * kMaxChannels);
  c.conv_in_kernel = j.int_in("conv_in_kernel", 3, 1, 15);
  c.conv_out_kernel = j.int_in("conv_out_kernel", 3, 1, 15);
  c.resnet_out_scale_factor = j.float_in("resnet_out_scale_factor", 1.0, 0.0, 1e6, true);
  c.sample_size = j.int_in("sample_size", 128, 1, kMaxSampleSize);

  // Options SDXL does not use: refused by name rather than silently ignored.
  if (j.string_or("act_fn", "silu") != "silu") j.unsupported("act_fn", "only silu");
  if (j.string_or("time_embedding_type", "positional") != "positional") {
    j.unsupported("time_embedding_type", "only positional");
  }
  if (j.string_or("resnet_time_scale_shift", "default") != "default") {
    j.unsupported("resnet_time_scale_shift", "only default");
  }
  if (j.string_or("attention_type", "default") != "default") j.unsupported("attention_type", "only default");
  for (const char* key : {"class_embed_type", "encoder_hid_dim", "encoder_hid_dim_type", "time_cond_proj_dim",
                          "time_embedding_dim", "time_embedding_act_fn", "timestep_post_act", "num_class_embeds",
                          "cross_attention_norm", "mid_block_only_cross_attention"}) {
    if (j.has(key)) j.unsupported(key, "only null");
  }
  for (const char* key : {"dual_cross_attention", "only_cross_attention", "resnet_skip_time_act",
                          "class_embeddings_concat"}) {
    if (j.bool_or(key, false)) j.unsupported(key, "only false");
  }
  if (c.addition_embed_type == "text_time" &&
      (c.addition_time_embed_dim <= 0 || c.projection_class_embeddings_input_dim <= 0)) {
    throw Error("'" + j.source() + "': addition_embed_type \"text_time\" needs addition_time_embed_dim and "
                "projection_class_embeddings_input_dim");
  }
  if (c.conv_in_kernel % 2 == 0 || c.conv_out_kernel % 2 == 0) {
    throw Error("'" + j.source() + "': conv_in_kernel and conv_out_kernel must be odd");
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (c.block_out_channels[i] % c.norm_num_groups != 0) {
      throw Error("'" + j.source() + "': block_out_channels[" + std::to_string(i) + "] = " +
                  std::to_string(c.block_out_channels[i]) + " is not divisible by norm_num_groups");
    }
    // Attention splits a block's channels into heads (the mid block uses the last level's).
    const bool attends = c.down_block_types[i] == "CrossAttnDownBlock2D" || i + 1 == n;
    if (attends && c.block_out_channels[i] % c.num_attention_heads[i] != 0) {
      throw Error("'" + j.source() + "': block_out_channels[" + std::to_string(i) + "] = " +
                  std::to_string(c.block_out_channels[i]) + " is not divisible by attention_head_dim[" +
                  std::to_string(i) + "] = " + std::to_string(c.num_attention_heads[i]) + " (the number of heads)");
    }
  }
  return c;
}

}  // namespace sdxl::model
