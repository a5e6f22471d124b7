#include "sdxl_dreambooth/model/unet_config.h"

#include "sdxl_dreambooth/error.h"

#include <algorithm>

namespace sdxl::model {

// ref: diffusers 0.27 UNet2DConditionModel.__init__ and its argument checks.
UNetConfig UNetConfig::from_json(const JsonConfig& j) {
  UNetConfig c;
  const std::string cls = j.string_or("_class_name", "UNet2DConditionModel");
  if (cls != "UNet2DConditionModel") j.unsupported("_class_name", "expected UNet2DConditionModel");
  c.in_channels = j.int_or("in_channels", 4);
  c.out_channels = j.int_or("out_channels", 4);
  c.center_input_sample = j.bool_or("center_input_sample", false);
  c.flip_sin_to_cos = j.bool_or("flip_sin_to_cos", true);
  c.freq_shift = j.int_or("freq_shift", 0);
  c.down_block_types = j.require_string_list("down_block_types");
  c.up_block_types = j.require_string_list("up_block_types");
  c.mid_block_type = j.string_or("mid_block_type", "UNetMidBlock2DCrossAttn");
  c.block_out_channels = j.require_int_list("block_out_channels");
  const std::size_t n = c.down_block_types.size();
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
  c.layers_per_block = j.int_or_list("layers_per_block", n, 2);
  c.transformer_layers_per_block = j.int_or_list("transformer_layers_per_block", n, 1);
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
  c.num_attention_heads = j.int_or_list("attention_head_dim", n, 8);
  c.cross_attention_dim = j.int_or_list("cross_attention_dim", n, 1280);
  c.downsample_padding = j.int_or("downsample_padding", 1);
  c.mid_block_scale_factor = j.float_or("mid_block_scale_factor", 1.0);
  c.norm_num_groups = j.int_or("norm_num_groups", 32);
  c.norm_eps = j.float_or("norm_eps", 1e-5);
  c.use_linear_projection = j.bool_or("use_linear_projection", false);
  c.upcast_attention = j.bool_or("upcast_attention", false);
  c.addition_embed_type = j.string_or("addition_embed_type", "");
  if (!c.addition_embed_type.empty() && c.addition_embed_type != "text_time") {
    j.unsupported("addition_embed_type", "only null or \"text_time\"");
  }
  c.addition_time_embed_dim = j.int_or("addition_time_embed_dim", 0);
  c.projection_class_embeddings_input_dim = j.int_or("projection_class_embeddings_input_dim", 0);
  c.conv_in_kernel = j.int_or("conv_in_kernel", 3);
  c.conv_out_kernel = j.int_or("conv_out_kernel", 3);
  c.resnet_out_scale_factor = j.float_or("resnet_out_scale_factor", 1.0);
  c.sample_size = j.int_or("sample_size", 128);

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
  }
  return c;
}

}  // namespace sdxl::model
