#include "sdxl_dreambooth/model/vae_config.h"

#include "sdxl_dreambooth/error.h"

namespace sdxl::model {

// ref: diffusers 0.27 AutoencoderKL.__init__.
VaeConfig VaeConfig::from_json(const JsonConfig& j) {
  VaeConfig c;
  const std::string cls = j.string_or("_class_name", "AutoencoderKL");
  if (cls != "AutoencoderKL") j.unsupported("_class_name", "expected AutoencoderKL");
  c.in_channels = j.int_in("in_channels", 3, 1, kMaxChannels);
  c.out_channels = j.int_in("out_channels", 3, 1, kMaxChannels);
  if (j.has("block_out_channels")) c.block_out_channels = j.int_list_in("block_out_channels", 1, kMaxChannels);
  const std::size_t n = c.block_out_channels.size();
  if (n == 0) throw Error("'" + j.source() + "': block_out_channels is empty");
  j.require(n <= static_cast<std::size_t>(kMaxBlocks), "block_out_channels",
            "at most " + std::to_string(kMaxBlocks) + " blocks");
  if (j.has("down_block_types")) {
    auto down = j.require_string_list("down_block_types");
    if (down.size() != n) throw Error("'" + j.source() + "': down_block_types and block_out_channels differ in length");
    for (const auto& t : down) {
      if (t != "DownEncoderBlock2D") j.unsupported("down_block_types", "only DownEncoderBlock2D");
    }
  }
  if (j.has("up_block_types")) {
    auto up = j.require_string_list("up_block_types");
    if (up.size() != n) throw Error("'" + j.source() + "': up_block_types and block_out_channels differ in length");
    for (const auto& t : up) {
      if (t != "UpDecoderBlock2D") j.unsupported("up_block_types", "only UpDecoderBlock2D");
    }
  }
  c.layers_per_block = j.int_in("layers_per_block", 1, 1, kMaxLayers);
  if (j.string_or("act_fn", "silu") != "silu") j.unsupported("act_fn", "only silu");
  c.latent_channels = j.int_in("latent_channels", 4, 1, kMaxChannels);
  c.norm_num_groups = j.int_in("norm_num_groups", 32, 1, kMaxGroups);
  c.sample_size = j.int_in("sample_size", 32, 1, kMaxSampleSize);
  c.scaling_factor = j.float_in("scaling_factor", 0.18215, 0.0, 1e6, true);
  c.shift_factor = j.optional_float("shift_factor");
  c.force_upcast = j.bool_or("force_upcast", true);
  c.use_quant_conv = j.bool_or("use_quant_conv", true);
  c.use_post_quant_conv = j.bool_or("use_post_quant_conv", true);
  c.mid_block_add_attention = j.bool_or("mid_block_add_attention", true);
  c.latents_mean = j.optional_float_list("latents_mean", static_cast<std::size_t>(c.latent_channels));
  c.latents_std = j.optional_float_list("latents_std", static_cast<std::size_t>(c.latent_channels));
  j.require(c.latents_mean.has_value() == c.latents_std.has_value(), c.latents_mean ? "latents_std" : "latents_mean",
            "must be given with the other of latents_mean and latents_std");
  if (c.latents_std) {
    for (double s : *c.latents_std) j.require(s > 0, "latents_std", "must be positive");
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (c.block_out_channels[i] % c.norm_num_groups != 0) {
      throw Error("'" + j.source() + "': block_out_channels[" + std::to_string(i) +
                  "] is not divisible by norm_num_groups");
    }
  }
  return c;
}

}  // namespace sdxl::model
