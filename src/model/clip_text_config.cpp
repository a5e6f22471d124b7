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
  c.vocab_size = j.int_in("vocab_size", 49408, 1, std::int64_t{1} << 22);
  c.hidden_size = j.int_in("hidden_size", 512, 1, kMaxChannels);
  c.intermediate_size = j.int_in("intermediate_size", 2048, 1, 8 * kMaxChannels);
  c.projection_dim = j.int_in("projection_dim", 512, 1, kMaxChannels);
  c.num_hidden_layers = j.int_in("num_hidden_layers", 12, 1, 4 * kMaxLayers);
  c.num_attention_heads = j.int_in("num_attention_heads", 8, 1, kMaxHeads);
  c.max_position_embeddings = j.int_in("max_position_embeddings", 77, 1, 8192);
  c.hidden_act = j.string_or("hidden_act", "quick_gelu");
  if (c.hidden_act != "quick_gelu" && c.hidden_act != "gelu") j.unsupported("hidden_act", "only quick_gelu or gelu");
  c.layer_norm_eps = j.float_in("layer_norm_eps", 1e-5, 0.0, 1.0, true);
  c.eos_token_id = j.int_in("eos_token_id", 2, 0, c.vocab_size - 1);
  j.require(c.hidden_size % c.num_attention_heads == 0, "hidden_size",
            "not divisible by num_attention_heads = " + std::to_string(c.num_attention_heads));
  return c;
}

}  // namespace sdxl::model
