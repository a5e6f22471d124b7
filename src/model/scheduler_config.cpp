#include "sdxl_dreambooth/model/scheduler_config.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/util/strings.h"

namespace sdxl::model {

// ref: diffusers 0.27 EulerDiscreteScheduler / DDPMScheduler defaults.
SchedulerConfig SchedulerConfig::from_json(const JsonConfig& j) {
  SchedulerConfig c;
  c.class_name = j.string_or("_class_name", "EulerDiscreteScheduler");
  c.num_train_timesteps = j.int_in("num_train_timesteps", 1000, 2, 100000);
  c.beta_start = j.float_in("beta_start", 0.0001, 0.0, 1.0, true);
  c.beta_end = j.float_in("beta_end", 0.02, 0.0, 1.0, true);
  j.require(c.beta_end > c.beta_start, "beta_end", "must be above beta_start = " + util::format_number(c.beta_start));
  c.beta_schedule = j.string_or("beta_schedule", "linear");
  if (c.beta_schedule != "linear" && c.beta_schedule != "scaled_linear") {
    j.unsupported("beta_schedule", "only linear or scaled_linear");
  }
  if (j.has("trained_betas")) j.unsupported("trained_betas", "only null");
  c.prediction_type = j.string_or("prediction_type", "epsilon");
  if (c.prediction_type != "epsilon" && c.prediction_type != "v_prediction") {
    j.unsupported("prediction_type", "only epsilon or v_prediction");
  }
  c.steps_offset = j.int_in("steps_offset", 0, 0, c.num_train_timesteps - 1);
  c.timestep_spacing = j.string_or("timestep_spacing", "linspace");
  if (c.timestep_spacing != "linspace" && c.timestep_spacing != "leading" && c.timestep_spacing != "trailing") {
    j.unsupported("timestep_spacing", "only linspace, leading or trailing");
  }
  c.use_karras_sigmas = j.bool_or("use_karras_sigmas", false);
  c.interpolation_type = j.string_or("interpolation_type", "linear");
  c.rescale_betas_zero_snr = j.bool_or("rescale_betas_zero_snr", false);
  if (c.edm()) {
    // ref: diffusers 0.27 EDMEulerScheduler / EDMDPMSolverMultistepScheduler.
    if (c.class_name != "EDMEulerScheduler" && c.class_name != "EDMDPMSolverMultistepScheduler") {
      j.unsupported("_class_name", "of the EDM schedulers only EDMEulerScheduler and EDMDPMSolverMultistepScheduler");
    }
    c.sigma_min = j.float_in("sigma_min", 0.002, 0.0, 1e6, true);
    c.sigma_max = j.float_in("sigma_max", 80.0, 0.0, 1e6, true);
    j.require(c.sigma_max > c.sigma_min, "sigma_max", "must be above sigma_min = " + util::format_number(c.sigma_min));
    c.sigma_data = j.float_in("sigma_data", 0.5, 0.0, 1e6, true);
    c.rho = j.float_in("rho", 7.0, 0.0, 1e6, true);
    if (j.string_or("sigma_schedule", "karras") != "karras") j.unsupported("sigma_schedule", "only karras");
    if (j.string_or("final_sigmas_type", "zero") != "zero") j.unsupported("final_sigmas_type", "only zero");
  }
  return c;
}

}  // namespace sdxl::model
