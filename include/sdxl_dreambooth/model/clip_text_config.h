// transformers' CLIPTextConfig (config.json of text_encoder/ and text_encoder_2/).
#pragma once

#include "sdxl_dreambooth/model/json_config.h"

#include <string>

namespace sdxl::model {

struct ClipTextConfig {
  bool with_projection = false;  // CLIPTextModelWithProjection (SDXL's text_encoder_2)
  std::int64_t vocab_size = 49408;
  std::int64_t hidden_size = 512;
  std::int64_t intermediate_size = 2048;
  std::int64_t projection_dim = 512;
  std::int64_t num_hidden_layers = 12;
  std::int64_t num_attention_heads = 8;
  std::int64_t max_position_embeddings = 77;
  std::string hidden_act = "quick_gelu";  // or "gelu"
  double layer_norm_eps = 1e-5;
  std::int64_t eos_token_id = 2;

  static ClipTextConfig from_json(const JsonConfig& json);
  static ClipTextConfig load(const std::filesystem::path& path) { return from_json(JsonConfig::load(path)); }
};

}  // namespace sdxl::model
