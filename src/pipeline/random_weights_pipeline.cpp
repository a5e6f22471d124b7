#include "sdxl_dreambooth/pipeline/random_weights_pipeline.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/model/clip_text_config.h"
#include "sdxl_dreambooth/model/json_config.h"
#include "sdxl_dreambooth/model/model_location.h"
#include "sdxl_dreambooth/model/scheduler_config.h"
#include "sdxl_dreambooth/model/unet_config.h"
#include "sdxl_dreambooth/model/vae_config.h"
#include "sdxl_dreambooth/util/strings.h"

#include <nlohmann/json.hpp>

namespace sdxl::pipeline {

namespace fs = std::filesystem;

namespace {

// SDXL base 1.0's text encoders (their config.json files).
constexpr const char* kClipL = R"({
  "architectures": ["CLIPTextModel"], "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
  "num_hidden_layers": 12, "hidden_act": "quick_gelu", "projection_dim": 768})";
constexpr const char* kClipBigG = R"({
  "architectures": ["CLIPTextModelWithProjection"], "hidden_size": 1280, "intermediate_size": 5120,
  "num_attention_heads": 20, "num_hidden_layers": 32, "hidden_act": "gelu", "projection_dim": 1280})";

fs::path required_config(const fs::path& dir, const std::string& component) {
  if (auto p = architecture_config(dir, component)) return *p;
  throw UsageError("architecture folder " + util::quoted(dir.string()) + " has no " + component +
                   " config (looked for " + (dir / component / "config.json").string() + " and " +
                   (dir / (component + ".config.json")).string() + ")");
}

model::ClipTextConfig text_encoder_config(const fs::path& dir, const std::string& component, const char* fallback) {
  if (auto p = architecture_config(dir, component)) return model::ClipTextConfig::load(*p);
  return model::ClipTextConfig::from_json(model::JsonConfig(nlohmann::json::parse(fallback), component + " (SDXL)"));
}

template <typename M>
M prepared(M module, torch::Dtype dtype, const torch::Device& device) {
  module->to(device, dtype);
  module->eval();
  for (auto& p : module->parameters()) p.set_requires_grad(false);
  return module;
}

}  // namespace

std::optional<fs::path> architecture_config(const fs::path& dir, const std::string& component) {
  for (const fs::path& p : {dir / component / "config.json", dir / (component + ".config.json")}) {
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) return p;
  }
  return std::nullopt;
}

nn::UNet2DConditionModel random_unet(const fs::path& dir, torch::Dtype dtype, const torch::Device& device) {
  const auto config = model::UNetConfig::load(required_config(dir, "unet"));
  torch::manual_seed(0);
  return prepared(nn::UNet2DConditionModel(config), dtype, device);
}

SdxlPipeline random_weights_pipeline(const PipelineOptions& o, const fs::path& architecture) {
  SdxlPipeline p;
  p.options = o;
  const model::PipelineFolder folder = model::open_pipeline(o.model, o.revision);
  p.unet = random_unet(architecture, o.dtype, o.device);
  p.vae = prepared(nn::AutoencoderKL(model::VaeConfig::load(required_config(architecture, "vae"))),
                   o.vae_dtype.value_or(o.dtype), o.device);
  p.text_encoder =
      prepared(nn::ClipTextModel(text_encoder_config(architecture, "text_encoder", kClipL)), o.dtype, o.device);
  p.text_encoder_2 =
      prepared(nn::ClipTextModel(text_encoder_config(architecture, "text_encoder_2", kClipBigG)), o.dtype, o.device);
  p.tokenizer.emplace(text::ClipTokenizer::load(folder.component("tokenizer")));
  p.tokenizer_2.emplace(text::ClipTokenizer::load(folder.component("tokenizer_2")));
  p.scheduler_config = model::SchedulerConfig::load(folder.component("scheduler") / "scheduler_config.json");
  return p;
}

}  // namespace sdxl::pipeline
