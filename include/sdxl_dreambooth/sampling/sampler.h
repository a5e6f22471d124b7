// Sampling solvers with diffusers' semantics: timestep spacing (leading / trailing /
// linspace), steps_offset, init_noise_sigma, scale_model_input, step. Implementations:
// EulerDiscreteScheduler (optionally Karras sigmas) and DPMSolverMultistepScheduler
// (DPM-Solver++ 2M, what diffusers' DreamBooth script validates with).
#pragma once

#include "sdxl_dreambooth/model/scheduler_config.h"

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace sdxl::sampling {

class Sampler {
 public:
  virtual ~Sampler() = default;
  // Prepares `steps` timesteps; resets the solver state.
  virtual void set_timesteps(std::int64_t steps) = 0;
  // The model's timestep at each step (fractional for Karras sigmas).
  virtual const std::vector<double>& timesteps() const = 0;
  virtual double init_noise_sigma() const = 0;
  virtual torch::Tensor scale_model_input(const torch::Tensor& sample, std::size_t step) const = 0;
  // One solver step from the model output at step `step`; steps are taken in order.
  virtual torch::Tensor step(const torch::Tensor& model_output, std::size_t step, const torch::Tensor& sample) = 0;
  // sigmas, one more than timesteps (the last is 0).
  virtual const std::vector<double>& sigmas() const = 0;
};

// "euler" | "euler_karras" | "dpmpp2m"; throws UsageError naming the choices otherwise.
std::unique_ptr<Sampler> make_sampler(const std::string& name, const model::SchedulerConfig& config);

}  // namespace sdxl::sampling
