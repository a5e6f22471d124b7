// EDM-style training (Karras et al. 2022, §5; diffusers' --do_edm_style_training): a noise
// level σ per example, noisy = x + σ·ε, the UNet fed preconditioned inputs and its output
// turned into a prediction of x. Two flavours, as diffusers 0.27.2's script:
//  - on SDXL's own (DDPM) schedule, the Euler way: σ of the drawn timestep (EulerDiscreteScheduler's
//    training sigmas), input / √(σ² + 1), ε: x̂ = x_σ - σ·out (v: -σ/√(σ²+1)·out + x_σ/(σ²+1)),
//    loss weighted by σ⁻²;
//  - for an EDM base (scheduler class EDM*, Playground v2.5): Karras σ between sigma_min and
//    sigma_max, c_in, c_skip, c_out with sigma_data, c_noise = ¼·ln σ as the UNet's timestep,
//    plain MSE.
// In both the target is the clean latents.
#pragma once

#include "sdxl_dreambooth/model/scheduler_config.h"

#include <torch/torch.h>

namespace sdxl::sampling {

class EdmSchedule {
 public:
  // The flavour the config calls for: an EDM base's own, else the Euler schedule of its betas.
  explicit EdmSchedule(const model::SchedulerConfig& config);

  bool edm_base() const { return config_.edm(); }
  const model::SchedulerConfig& config() const { return config_; }
  std::int64_t size() const { return sigmas_.size(0); }
  // The tables on `device`, beside the batches.
  EdmSchedule to(const torch::Device& device) const;

  // Schedule entry `indices` (int64 [B], drawn uniformly in [0, size)): the UNet's timestep
  // and σ, float32 [B].
  torch::Tensor timesteps(const torch::Tensor& indices) const;
  torch::Tensor sigmas(const torch::Tensor& indices) const;

  // With σ broadcast to x's rank: the UNet's input from noisy latents, the prediction of the
  // clean latents from its output, and the loss weight (undefined: none).
  torch::Tensor precondition_inputs(const torch::Tensor& noisy, const torch::Tensor& sigma) const;
  torch::Tensor precondition_outputs(const torch::Tensor& noisy, const torch::Tensor& output,
                                     const torch::Tensor& sigma, const std::string& prediction_type) const;
  torch::Tensor loss_weighting(const torch::Tensor& sigma) const;

 private:
  model::SchedulerConfig config_;
  torch::Tensor timesteps_, sigmas_;  // [size] float32, in the scheduler's order (σ decreasing)
};

// An EDM base's Karras sigmas over `ramp` (values in [0, 1]): (σmax^(1/ρ) + ramp·(σmin^(1/ρ) -
// σmax^(1/ρ)))^ρ, in ramp's dtype.
torch::Tensor edm_karras_sigmas(const model::SchedulerConfig& config, const torch::Tensor& ramp);

}  // namespace sdxl::sampling
