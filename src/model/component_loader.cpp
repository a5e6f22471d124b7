#include "sdxl_dreambooth/model/component_loader.h"

#include "sdxl_dreambooth/error.h"

namespace fs = std::filesystem;

namespace sdxl::model {

WeightSource open_component_weights(const fs::path& dir, const std::optional<std::string>& variant) {
  // Only a missing variant falls back; a corrupt variant file is an error.
  if (variant && WeightSource::find_component_file(dir, variant)) return WeightSource::open_component(dir, variant);
  return WeightSource::open_component(dir, std::nullopt);
}

std::vector<std::string> variant_fallback_warnings(const std::vector<fs::path>& dirs,
                                                   const std::optional<std::string>& variant) {
  std::vector<std::string> out;
  if (!variant) return out;
  for (const fs::path& dir : dirs) {
    if (!WeightSource::find_component_file(dir, variant)) {
      out.push_back("variant '" + *variant + "': '" + dir.string() +
                    "' has no weights of that variant; its full-precision files are loaded");
    }
  }
  return out;
}

namespace {

template <typename Module>
Module finish(Module module, const fs::path& dir, const std::string& what, const ComponentLoadOptions& options,
              ComponentInfo* info) {
  const WeightSource weights = open_component_weights(dir, options.variant);
  module->to(options.device, options.dtype);
  LoadReport report = load_state_dict(*module, weights, what + " (" + dir.string() + ")");
  module->eval();
  if (info) {
    info->weights = weights.description();
    info->report = std::move(report);
  }
  return module;
}

}  // namespace

nn::UNet2DConditionModel load_unet(const fs::path& dir, const ComponentLoadOptions& options, ComponentInfo* info) {
  return finish(nn::UNet2DConditionModel(UNetConfig::load(dir / "config.json")), dir, "unet", options, info);
}

nn::AutoencoderKL load_vae(const fs::path& dir, const ComponentLoadOptions& options, ComponentInfo* info) {
  return finish(nn::AutoencoderKL(VaeConfig::load(dir / "config.json")), dir, "vae", options, info);
}

nn::ClipTextModel load_text_encoder(const fs::path& dir, const ComponentLoadOptions& options, ComponentInfo* info) {
  return finish(nn::ClipTextModel(ClipTextConfig::load(dir / "config.json")), dir, "text encoder", options, info);
}

}  // namespace sdxl::model
