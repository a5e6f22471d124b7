#include "full_size_pipeline.h"

#include "sdxl_dreambooth/model/clip_text_config.h"
#include "sdxl_dreambooth/model/json_config.h"
#include "sdxl_dreambooth/model/scheduler_config.h"
#include "sdxl_dreambooth/model/unet_config.h"
#include "sdxl_dreambooth/model/vae_config.h"

#include <nlohmann/json.hpp>

namespace sdxl::bench {

namespace fs = std::filesystem;

namespace {

model::ClipTextConfig clip_config(const char* json) {
  return model::ClipTextConfig::from_json(model::JsonConfig(nlohmann::json::parse(json), "bench"));
}

}  // namespace

pipeline::SdxlPipeline full_size_pipeline(const fs::path& model_dir, const fs::path& manifest) {
  torch::manual_seed(0);
  pipeline::SdxlPipeline p;
  p.unet = nn::UNet2DConditionModel(model::UNetConfig::load(manifest / "unet.config.json"));
  p.vae = nn::AutoencoderKL(model::VaeConfig::load(manifest / "vae.config.json"));
  p.text_encoder = nn::ClipTextModel(clip_config(R"({
    "architectures": ["CLIPTextModel"], "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
    "num_hidden_layers": 12, "hidden_act": "quick_gelu", "projection_dim": 768})"));
  p.text_encoder_2 = nn::ClipTextModel(clip_config(R"({
    "architectures": ["CLIPTextModelWithProjection"], "hidden_size": 1280, "intermediate_size": 5120,
    "num_attention_heads": 20, "num_hidden_layers": 32, "hidden_act": "gelu", "projection_dim": 1280})"));
  for (torch::nn::Module* m : {static_cast<torch::nn::Module*>(p.unet.get()), static_cast<torch::nn::Module*>(p.vae.get()),
                               static_cast<torch::nn::Module*>(p.text_encoder.get()),
                               static_cast<torch::nn::Module*>(p.text_encoder_2.get())}) {
    m->eval();
  }
  p.tokenizer.emplace(text::ClipTokenizer::load(model_dir / "tokenizer"));
  p.tokenizer_2.emplace(text::ClipTokenizer::load(model_dir / "tokenizer_2"));
  p.scheduler_config = model::SchedulerConfig::load(model_dir / "scheduler" / "scheduler_config.json");
  return p;
}

}  // namespace sdxl::bench
