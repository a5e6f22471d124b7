// The DDPM noise schedule of training (diffusers DDPMScheduler + training_utils.compute_snr):
// betas, alphas_cumprod, add_noise, SNR and the v-prediction target, from scheduler_config.json.
#pragma once

#include "sdxl_dreambooth/model/scheduler_config.h"

#include <torch/torch.h>

namespace sdxl::sampling {

class NoiseSchedule {
 public:
  explicit NoiseSchedule(const model::SchedulerConfig& config);

  // [num_train_timesteps] float32, computed exactly as diffusers does (float32 linspace, cumprod).
  const torch::Tensor& alphas_cumprod() const { return alphas_cumprod_; }
  std::int64_t num_train_timesteps() const { return alphas_cumprod_.size(0); }
  const model::SchedulerConfig& config() const { return config_; }
  // The same schedule with its table on `device`: training keeps it where the batches are, so
  // looking up ᾱ_t for a step's timesteps copies nothing between host and device.
  NoiseSchedule to(const torch::Device& device) const;

  // sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) noise, per batch element.
  torch::Tensor add_noise(const torch::Tensor& x0, const torch::Tensor& noise, const torch::Tensor& timesteps) const;
  // sqrt(ᾱ_t) noise - sqrt(1 - ᾱ_t) x0: the v-prediction target.
  torch::Tensor velocity(const torch::Tensor& x0, const torch::Tensor& noise, const torch::Tensor& timesteps) const;
  // ᾱ_t / (1 - ᾱ_t), for min-SNR-γ weighting.
  torch::Tensor snr(const torch::Tensor& timesteps) const;

 private:
  // sqrt(ᾱ_t) and sqrt(1 - ᾱ_t) broadcast to `like`'s rank.
  std::pair<torch::Tensor, torch::Tensor> coefficients(const torch::Tensor& timesteps, const torch::Tensor& like) const;

  model::SchedulerConfig config_;
  torch::Tensor alphas_cumprod_;
};

}  // namespace sdxl::sampling
