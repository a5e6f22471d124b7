#include "sdxl_dreambooth/model/scheduler_config.h"

#include "sdxl_dreambooth/error.h"

namespace sdxl::model {

// ref: diffusers 0.27 EulerDiscreteScheduler / DDPMScheduler defaults.
SchedulerConfig SchedulerConfig::from_json(const JsonConfig& j) {
  SchedulerConfig c;
  c.class_name = j.get_string("_class_name", "EulerDiscreteScheduler");
  c.num_train_timesteps = j.get_int("num_train_timesteps", 1000);
  c.beta_start = j.get_float("beta_start", 0.0001);
  c.beta_end = j.get_float("beta_end", 0.02);
  c.beta_schedule = j.get_string("beta_schedule", "linear");
  if (c.beta_schedule != "linear" && c.beta_schedule != "scaled_linear") {
    j.unsupported("beta_schedule", "only linear or scaled_linear");
  }
  if (j.has("trained_betas")) j.unsupported("trained_betas", "only null");
  c.prediction_type = j.get_string("prediction_type", "epsilon");
  if (c.prediction_type != "epsilon" && c.prediction_type != "v_prediction") {
    j.unsupported("prediction_type", "only epsilon or v_prediction");
  }
  c.steps_offset = j.get_int("steps_offset", 0);
  c.timestep_spacing = j.get_string("timestep_spacing", "linspace");
  if (c.timestep_spacing != "linspace" && c.timestep_spacing != "leading" && c.timestep_spacing != "trailing") {
    j.unsupported("timestep_spacing", "only linspace, leading or trailing");
  }
  c.use_karras_sigmas = j.get_bool("use_karras_sigmas", false);
  c.interpolation_type = j.get_string("interpolation_type", "linear");
  c.rescale_betas_zero_snr = j.get_bool("rescale_betas_zero_snr", false);
  if (c.num_train_timesteps < 2) throw Error("'" + j.source() + "': num_train_timesteps must be at least 2");
  return c;
}

}  // namespace sdxl::model
