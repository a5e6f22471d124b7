#include "sdxl_dreambooth/sampling/noise_schedule.h"

#include <cmath>

namespace sdxl::sampling {

NoiseSchedule::NoiseSchedule(const model::SchedulerConfig& c) : config_(c) {
  // ref: diffusers DDPMScheduler.__init__ (float32 throughout, as there).
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat);
  torch::Tensor betas;
  if (c.beta_schedule == "scaled_linear") {
    betas = torch::linspace(std::sqrt(c.beta_start), std::sqrt(c.beta_end), c.num_train_timesteps, f32).pow(2);
  } else {
    betas = torch::linspace(c.beta_start, c.beta_end, c.num_train_timesteps, f32);
  }
  alphas_cumprod_ = torch::cumprod(1.0 - betas, 0);
  if (c.rescale_betas_zero_snr) {
    // ref: diffusers rescale_zero_terminal_snr.
    torch::Tensor s = alphas_cumprod_.sqrt();
    const auto first = s[0].clone(), last = s[-1].clone();
    s = (s - last) * first / (first - last);
    alphas_cumprod_ = s.pow(2);
    alphas_cumprod_[-1] = std::pow(2.0, -24);
  }
}

NoiseSchedule NoiseSchedule::to(const torch::Device& device) const {
  NoiseSchedule moved = *this;
  moved.alphas_cumprod_ = alphas_cumprod_.to(device);
  return moved;
}

std::pair<torch::Tensor, torch::Tensor> NoiseSchedule::coefficients(const torch::Tensor& timesteps,
                                                                    const torch::Tensor& like) const {
  const torch::Tensor ac = alphas_cumprod_.to(like.device()).index({timesteps.to(like.device()).to(torch::kLong)});
  torch::Tensor a = ac.pow(0.5), b = (1.0 - ac).pow(0.5);
  while (a.dim() < like.dim()) {
    a = a.unsqueeze(-1);
    b = b.unsqueeze(-1);
  }
  return {a.to(like.scalar_type()), b.to(like.scalar_type())};
}

torch::Tensor NoiseSchedule::add_noise(const torch::Tensor& x0, const torch::Tensor& noise,
                                       const torch::Tensor& timesteps) const {
  auto [a, b] = coefficients(timesteps, x0);
  return a * x0 + b * noise;
}

torch::Tensor NoiseSchedule::velocity(const torch::Tensor& x0, const torch::Tensor& noise,
                                      const torch::Tensor& timesteps) const {
  auto [a, b] = coefficients(timesteps, x0);
  return a * noise - b * x0;
}

torch::Tensor NoiseSchedule::snr(const torch::Tensor& timesteps) const {
  // ref: diffusers training_utils.compute_snr (which moves the table to the timesteps' device).
  const torch::Tensor idx = timesteps.to(torch::kLong).to(alphas_cumprod_.device());
  const torch::Tensor alpha = alphas_cumprod_.sqrt().index({idx});
  const torch::Tensor sigma = (1.0 - alphas_cumprod_).sqrt().index({idx});
  return (alpha / sigma).pow(2).to(timesteps.device());
}

}  // namespace sdxl::sampling
