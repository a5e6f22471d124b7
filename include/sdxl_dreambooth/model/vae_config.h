// AutoencoderKL's config.json with diffusers 0.27's defaults.
#pragma once

#include "sdxl_dreambooth/model/json_config.h"

#include <optional>
#include <string>
#include <vector>

namespace sdxl::model {

struct VaeConfig {
  std::int64_t in_channels = 3;
  std::int64_t out_channels = 3;
  std::vector<std::int64_t> block_out_channels{64};
  std::int64_t layers_per_block = 1;
  std::int64_t latent_channels = 4;
  std::int64_t norm_num_groups = 32;
  std::int64_t sample_size = 32;
  double scaling_factor = 0.18215;
  std::optional<double> shift_factor;
  // Per-channel latent statistics (Playground v2.5): latents are (z - mean) · scaling_factor / std.
  std::optional<std::vector<double>> latents_mean, latents_std;
  bool force_upcast = true;
  bool use_quant_conv = true;
  bool use_post_quant_conv = true;
  bool mid_block_add_attention = true;

  static VaeConfig from_json(const JsonConfig& json);
  static VaeConfig load(const std::filesystem::path& path) { return from_json(JsonConfig::load(path)); }
};

}  // namespace sdxl::model
