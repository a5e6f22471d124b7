// Builds SDXL's networks from a component folder's config.json and strictly loads its
// weights: the one code path for the tiny reference pipeline and the real SDXL.
#pragma once

#include "sdxl_dreambooth/model/state_dict_loader.h"
#include "sdxl_dreambooth/nn/autoencoder_kl.h"
#include "sdxl_dreambooth/nn/clip_text_model.h"
#include "sdxl_dreambooth/nn/unet_2d_condition.h"

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace sdxl::model {

struct ComponentLoadOptions {
  std::optional<std::string> variant;  // "fp16": diffusion_pytorch_model.fp16.safetensors
  torch::Dtype dtype = torch::kFloat;  // dtype the frozen weights are held in
  torch::Device device = torch::kCPU;
};

struct ComponentInfo {
  std::string weights;  // the weight file (or index) that was read
  LoadReport report;
};

// Opens the component's weights; with a variant that this component lacks (a separate
// VAE often has no fp16 file) the full-precision files are used and `weights` says so.
WeightSource open_component_weights(const std::filesystem::path& dir, const std::optional<std::string>& variant);

// The warning for each of `dirs` that has no `variant` weights (they load full-precision, as
// diffusers' pipeline falls back), so the fallback is said, not silent; none without a variant.
std::vector<std::string> variant_fallback_warnings(const std::vector<std::filesystem::path>& dirs,
                                                   const std::optional<std::string>& variant);

nn::UNet2DConditionModel load_unet(const std::filesystem::path& dir, const ComponentLoadOptions& options,
                                   ComponentInfo* info = nullptr);
nn::AutoencoderKL load_vae(const std::filesystem::path& dir, const ComponentLoadOptions& options,
                           ComponentInfo* info = nullptr);
nn::ClipTextModel load_text_encoder(const std::filesystem::path& dir, const ComponentLoadOptions& options,
                                    ComponentInfo* info = nullptr);

}  // namespace sdxl::model
