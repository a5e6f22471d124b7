#include "sdxl_dreambooth/sampling/edm_schedule.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/sampling/noise_schedule.h"

#include <cmath>

namespace sdxl::sampling {

torch::Tensor edm_karras_sigmas(const model::SchedulerConfig& c, const torch::Tensor& ramp) {
  // ref: EDMEulerScheduler._compute_sigmas (diffusers 0.27).
  const double min_inv_rho = std::pow(c.sigma_min, 1.0 / c.rho), max_inv_rho = std::pow(c.sigma_max, 1.0 / c.rho);
  return (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)).pow(c.rho);
}

EdmSchedule::EdmSchedule(const model::SchedulerConfig& c) : config_(c) {
  const std::int64_t n = c.num_train_timesteps;
  if (c.edm()) {
    // ref: EDMEulerScheduler.__init__: a float32 ramp, timesteps = precondition_noise(σ).
    sigmas_ = edm_karras_sigmas(c, torch::linspace(0, 1, n, torch::kFloat));
    timesteps_ = 0.25 * torch::log(sigmas_);
  } else {
    // ref: EulerDiscreteScheduler.__init__: σ = √((1 - ᾱ)/ᾱ) flipped, timesteps n-1 … 0.
    const torch::Tensor ac = NoiseSchedule(c).alphas_cumprod();
    sigmas_ = ((1 - ac) / ac).pow(0.5).flip(0);
    timesteps_ = torch::arange(n - 1, -1, -1, torch::kFloat);
  }
}

EdmSchedule EdmSchedule::to(const torch::Device& device) const {
  EdmSchedule moved = *this;
  moved.timesteps_ = timesteps_.to(device);
  moved.sigmas_ = sigmas_.to(device);
  return moved;
}

torch::Tensor EdmSchedule::timesteps(const torch::Tensor& indices) const {
  return timesteps_.index_select(0, indices.to(timesteps_.device(), torch::kLong));
}

torch::Tensor EdmSchedule::sigmas(const torch::Tensor& indices) const {
  return sigmas_.index_select(0, indices.to(sigmas_.device(), torch::kLong));
}

torch::Tensor EdmSchedule::precondition_inputs(const torch::Tensor& noisy, const torch::Tensor& sigma) const {
  if (edm_base()) return noisy * (1 / (sigma.pow(2) + config_.sigma_data * config_.sigma_data).pow(0.5));
  return noisy / (sigma.pow(2) + 1).pow(0.5);
}

torch::Tensor EdmSchedule::precondition_outputs(const torch::Tensor& noisy, const torch::Tensor& output,
                                                const torch::Tensor& sigma, const std::string& prediction_type) const {
  const bool v = prediction_type == "v_prediction";
  if (!v && prediction_type != "epsilon") {
    throw UsageError("unknown prediction type \"" + prediction_type + "\" (expected epsilon or v_prediction)");
  }
  if (edm_base()) {
    // ref: EDMEulerScheduler.precondition_outputs.
    const double sd = config_.sigma_data;
    const torch::Tensor c_skip = sd * sd / (sigma.pow(2) + sd * sd);
    torch::Tensor c_out = sigma * sd / (sigma.pow(2) + sd * sd).pow(0.5);
    if (v) c_out = -c_out;
    return c_skip * noisy + c_out * output;
  }
  // ref: train_dreambooth_lora_sdxl.py (0.27.2), the EDM-style branch for Euler schedules.
  if (v) return output * (-sigma / (sigma.pow(2) + 1).pow(0.5)) + noisy / (sigma.pow(2) + 1);
  return output * (-sigma) + noisy;
}

torch::Tensor EdmSchedule::loss_weighting(const torch::Tensor& sigma) const {
  // diffusers weights by σ⁻² on Euler schedules only ("tends to result in numerical problems"
  // for EDM bases).
  if (edm_base()) return {};
  return sigma.pow(-2.0).to(torch::kFloat);
}

}  // namespace sdxl::sampling
