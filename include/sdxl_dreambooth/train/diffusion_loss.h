// The DreamBooth LoRA training objective of diffusers' train_dreambooth_lora_sdxl.py (0.27):
// noisy latents from DDPM add_noise, the UNet's prediction against ε or v, MSE with optional
// min-SNR-γ weighting, plus the prior-preservation loss on the class half of the batch. A mixed
// batch (kohya's regularization images) sums each part's example losses over half the rows:
// the same value as diffusers' two means for a half-and-half batch.
#pragma once

#include "sdxl_dreambooth/nn/unet_2d_condition.h"
#include "sdxl_dreambooth/sampling/edm_schedule.h"
#include "sdxl_dreambooth/sampling/noise_schedule.h"

#include <torch/torch.h>

#include <optional>
#include <string>

namespace sdxl::train {

// One micro-batch. With prior preservation the rows are [instance…; class…]: two equal halves,
// or, mixed (train/prior_mix.h), `instance_rows` instance rows and the rest class rows.
struct DiffusionBatch {
  torch::Tensor latents;        // [B, 4, h, w], already × the VAE scaling factor
  torch::Tensor noise;          // [B, 4, h, w]
  torch::Tensor timesteps;      // [B] int64; EDM-style: indices into the EdmSchedule
  torch::Tensor prompt_embeds;  // [B, 77, D]
  torch::Tensor text_embeds;    // [B, P] pooled
  torch::Tensor time_ids;       // [B, 6]
  std::optional<std::int64_t> instance_rows;  // mixed prior preservation only
};

struct LossOptions {
  std::string prediction_type = "epsilon";  // epsilon | v_prediction
  // train.loss: "l2" (MSE), or kohya's pseudo-Huber "huber" (2c(√(d² + c²) - c)) and
  // "smooth_l1" (2(√(d² + c²) - c)), with c per example from huber_c by huber_schedule:
  // "constant", "exponential" (c^(t/T)) or "snr" ((1 - c)/(1 + σ_t)² + c, σ_t = √((1-ᾱ_t)/ᾱ_t)).
  std::string loss = "l2";
  double huber_c = 0.1;
  std::string huber_schedule = "snr";
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

// Min-SNR-γ weights at `timesteps` ([B] float32; train.snr_gamma must be set).
torch::Tensor min_snr_weights(const sampling::NoiseSchedule& schedule, const torch::Tensor& timesteps,
                              const LossOptions& options);
// The pseudo-Huber threshold of each example at `timesteps` ([B] float32, on their device).
torch::Tensor huber_c(const sampling::NoiseSchedule& schedule, const torch::Tensor& timesteps, const LossOptions& options);
// The loss of each element for train.loss = huber / smooth_l1 with c of each example ([B]).
torch::Tensor pseudo_huber(const torch::Tensor& pred, const torch::Tensor& target, const torch::Tensor& c,
                           const std::string& loss);

// EDM-style training (train.edm_style, or an EDM base: sampling/edm_schedule.h): the target is
// the clean latents; SNR-γ does not apply (diffusers refuses the combination, so does the config).
LossResult edm_diffusion_loss(nn::UNet2DConditionModel& unet, const sampling::EdmSchedule& schedule,
                              const DiffusionBatch& batch, const LossOptions& options);

}  // namespace sdxl::train
