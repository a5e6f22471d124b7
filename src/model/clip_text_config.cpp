#include "sdxl_dreambooth/model/clip_text_config.h"

#include "sdxl_dreambooth/error.h"

namespace sdxl::model {

// ref: transformers CLIPTextConfig defaults.
ClipTextConfig ClipTextConfig::from_json(const JsonConfig& j) {
  ClipTextConfig c;
  std::string arch = "CLIPTextModel";
  if (j.json().contains("architectures") && j.json()["architectures"].is_array() &&
      !j.json()["architectures"].empty() && j.json()["architectures"][0].is_string()) {
    arch = j.json()["architectures"][0].get<std::string>();
  }
  if (arch != "CLIPTextModel" && arch != "CLIPTextModelWithProjection") {
    j.unsupported("architectures", "expected CLIPTextModel or CLIPTextModelWithProjection");
  }
  c.with_projection = arch == "CLIPTextModelWithProjection";
  c.vocab_size = j.int_or("vocab_size", 49408);
  c.hidden_size = j.int_or("hidden_size", 512);
  c.intermediate_size = j.int_or("intermediate_size", 2048);
  c.projection_dim = j.int_or("projection_dim", 512);
  c.num_hidden_layers = j.int_or("num_hidden_layers", 12);
  c.num_attention_heads = j.int_or("num_attention_heads", 8);
  c.max_position_embeddings = j.int_or("max_position_embeddings", 77);
  c.hidden_act = j.string_or("hidden_act", "quick_gelu");
  if (c.hidden_act != "quick_gelu" && c.hidden_act != "gelu") j.unsupported("hidden_act", "only quick_gelu or gelu");
  c.layer_norm_eps = j.float_or("layer_norm_eps", 1e-5);
  c.eos_token_id = j.int_or("eos_token_id", 2);
  if (c.hidden_size % c.num_attention_heads != 0) {
    throw Error("'" + j.source() + "': hidden_size is not divisible by num_attention_heads");
  }
  return c;
}

}  // namespace sdxl::model
