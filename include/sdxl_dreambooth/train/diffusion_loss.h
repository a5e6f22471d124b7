// The DreamBooth LoRA training objective of diffusers' train_dreambooth_lora_sdxl.py (0.27):
// noisy latents from DDPM add_noise, the UNet's prediction against ε or v, MSE with optional
// min-SNR-γ weighting, plus the prior-preservation loss on the class half of the batch.
#pragma once

#include "sdxl_dreambooth/nn/unet_2d_condition.h"
#include "sdxl_dreambooth/sampling/noise_schedule.h"

#include <torch/torch.h>

#include <optional>
#include <string>

namespace sdxl::train {

// One micro-batch. With prior preservation the rows are [instance…; class…], two equal halves.
struct DiffusionBatch {
  torch::Tensor latents;        // [B, 4, h, w], already × the VAE scaling factor
  torch::Tensor noise;          // [B, 4, h, w]
  torch::Tensor timesteps;      // [B] int64
  torch::Tensor prompt_embeds;  // [B, 77, D]
  torch::Tensor text_embeds;    // [B, P] pooled
  torch::Tensor time_ids;       // [B, 6]
};

struct LossOptions {
  std::string prediction_type = "epsilon";  // epsilon | v_prediction
  std::optional<double> snr_gamma;
  bool with_prior = false;
  double prior_loss_weight = 1.0;
};

struct LossResult {
  torch::Tensor loss;           // what backward runs on (0-dim float32)
  torch::Tensor instance_loss;  // detached parts, for logging
  torch::Tensor prior_loss;     // undefined without prior preservation
};

LossResult diffusion_loss(nn::UNet2DConditionModel& unet, const sampling::NoiseSchedule& schedule,
                          const DiffusionBatch& batch, const LossOptions& options);

}  // namespace sdxl::train
