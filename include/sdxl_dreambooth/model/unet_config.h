// UNet2DConditionModel's config.json, with diffusers 0.27's defaults for absent keys and a
// clear error for every option this implementation does not support.
#pragma once

#include "sdxl_dreambooth/model/json_config.h"

#include <string>
#include <vector>

namespace sdxl::model {

struct UNetConfig {
  std::int64_t in_channels = 4;
  std::int64_t out_channels = 4;
  bool center_input_sample = false;
  bool flip_sin_to_cos = true;
  std::int64_t freq_shift = 0;
  std::vector<std::string> down_block_types;
  std::vector<std::string> up_block_types;
  std::string mid_block_type = "UNetMidBlock2DCrossAttn";  // "" = no mid block
  std::vector<std::int64_t> block_out_channels;
  std::vector<std::int64_t> layers_per_block;              // per down block
  std::vector<std::int64_t> transformer_layers_per_block;  // per down block
  std::vector<std::int64_t> reverse_transformer_layers_per_block;  // per up block
  std::vector<std::int64_t> num_attention_heads;           // per down block
  std::vector<std::int64_t> cross_attention_dim;           // per down block
  std::int64_t downsample_padding = 1;
  double mid_block_scale_factor = 1.0;
  std::int64_t norm_num_groups = 32;
  double norm_eps = 1e-5;
  bool use_linear_projection = false;
  bool upcast_attention = false;
  std::string addition_embed_type;  // "" or "text_time"
  std::int64_t addition_time_embed_dim = 0;
  std::int64_t projection_class_embeddings_input_dim = 0;
  std::int64_t conv_in_kernel = 3;
  std::int64_t conv_out_kernel = 3;
  double resnet_out_scale_factor = 1.0;
  std::int64_t sample_size = 128;

  std::int64_t time_embed_dim() const { return block_out_channels.at(0) * 4; }

  static UNetConfig from_json(const JsonConfig& json);
  static UNetConfig load(const std::filesystem::path& path) { return from_json(JsonConfig::load(path)); }
};

}  // namespace sdxl::model
