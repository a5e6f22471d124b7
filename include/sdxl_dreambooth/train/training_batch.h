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
  // train.multires_noise_iterations / _discount: kohya's pyramid noise; 0 iterations for none.
  std::int64_t multires_iterations = 0;
  double multires_discount = 0.3;
  // data.caption_dropout: each instance example's prompt becomes the empty one with this
  // probability (one draw per example, after the timesteps); class examples keep theirs.
  double caption_dropout = 0;
  // Timesteps (EDM: schedule indices) are drawn uniformly in [min_timestep, max_timestep).
  std::int64_t min_timestep = 0;
  std::int64_t max_timestep = 1000;
  double scaling_factor = 1;  // the VAE's
  // The VAE's per-channel latents_mean / latents_std as [1, C, 1, 1] (Playground v2.5);
  // undefined for SDXL, whose latents are only scaled.
  torch::Tensor latents_mean, latents_std;
  torch::Device device = torch::kCPU;
  // Text-encoder LoRA, pivotal tuning or shuffled tags: this pipeline's text encoders encode
  // each step's prompts (from their token ids); nullptr uses the cached embeddings.
  pipeline::SdxlPipeline* text_encoders = nullptr;
  // Gradients flow into the text encoders: their LoRA, or pivotal tuning's embeddings until the pivot.
  bool text_encoder_grad = false;
  // data.shuffle_tags: each instance caption's tags after the first keep_tokens are shuffled
  // (one permutation per example, drawn after the caption dropout) before text_encoders encode them.
  bool shuffle_tags = false;
  std::int64_t keep_tokens = 0;
  std::string caption_separator = ",";
};

// kohya's pyramid_noise_like: `iterations` levels of coarser noise, each level i drawn at
// size / r^i (r uniform in [2, 4) per level) and upsampled bilinearly, weighted discount^i and
// added; then scaled to unit standard deviation. Stops after a 1-pixel level.
torch::Tensor pyramid_noise(torch::Tensor noise, std::int64_t iterations, double discount, at::Generator& gen);

// Dataset rows `idx` (instance rows modulo the instance count, class rows modulo theirs).
DiffusionBatch assemble_batch(const TrainingData& data, const std::vector<std::int64_t>& idx, at::Generator& gen,
                              const BatchOptions& options);

}  // namespace sdxl::train
