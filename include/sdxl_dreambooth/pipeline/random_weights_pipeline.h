// SDXL's networks built from an architecture folder's configs with random weights: benchmarks
// of the full-size model on machines without its 7 GB of weights (`bench --architecture`, the
// bench/ programs). The folder is a diffusers pipeline (unet/config.json, vae/config.json, …)
// or a flat one (unet.config.json, vae.config.json) such as the reference manifest; text
// encoders without a config are SDXL's (CLIP ViT-L/14 and OpenCLIP bigG/14).
#pragma once

#include "sdxl_dreambooth/pipeline/sdxl_pipeline.h"

#include <filesystem>
#include <string>

namespace sdxl::pipeline {

// DIR/COMPONENT/config.json, else DIR/COMPONENT.config.json; nullopt when neither exists.
std::optional<std::filesystem::path> architecture_config(const std::filesystem::path& dir,
                                                         const std::string& component);

// The UNet of `dir` (its config is required: a UsageError naming both places otherwise),
// seeded random weights, in `dtype` on `device`.
nn::UNet2DConditionModel random_unet(const std::filesystem::path& dir, torch::Dtype dtype, const torch::Device& device);

// Every network from `architecture` with random weights (options.dtype, options.vae_dtype,
// options.device); tokenizers, scheduler and force_zeros_for_empty_prompt from options.model.
SdxlPipeline random_weights_pipeline(const PipelineOptions& options, const std::filesystem::path& architecture);

}  // namespace sdxl::pipeline
