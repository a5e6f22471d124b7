// A step's micro-batch from the cached examples: rows of the instance examples (then as many
// class rows with prior preservation), a fresh posterior sample, noise and timesteps drawn
// on the CPU in diffusers' order (the same numbers on every device).
#pragma once

#include "sdxl_dreambooth/pipeline/sdxl_pipeline.h"
#include "sdxl_dreambooth/train/diffusion_loss.h"
#include "sdxl_dreambooth/train/training_data.h"

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace sdxl::train {

struct BatchOptions {
  bool prior = false;
  double noise_offset = 0;  // train.noise_offset
  std::int64_t num_train_timesteps = 1000;
  double scaling_factor = 1;  // the VAE's
  torch::Device device = torch::kCPU;
  // Text-encoder LoRA: the prompt embeddings depend on trained weights, so this pipeline's
  // encoders compute them per step; nullptr uses the cached ones.
  pipeline::SdxlPipeline* train_text_encoders = nullptr;
};

// Dataset rows `idx` (instance rows modulo the instance count, class rows modulo theirs).
DiffusionBatch assemble_batch(const TrainingData& data, const std::vector<std::int64_t>& idx, at::Generator& gen,
                              const BatchOptions& options);

}  // namespace sdxl::train
