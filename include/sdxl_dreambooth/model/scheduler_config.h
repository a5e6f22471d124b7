// scheduler/scheduler_config.json: the noise schedule shared by training and sampling.
#pragma once

#include "sdxl_dreambooth/model/json_config.h"

#include <string>

namespace sdxl::model {

struct SchedulerConfig {
  std::string class_name = "EulerDiscreteScheduler";
  std::int64_t num_train_timesteps = 1000;
  double beta_start = 0.0001;
  double beta_end = 0.02;
  std::string beta_schedule = "linear";  // linear | scaled_linear
  std::string prediction_type = "epsilon";  // epsilon | v_prediction
  std::int64_t steps_offset = 0;
  std::string timestep_spacing = "linspace";  // linspace | leading | trailing
  bool use_karras_sigmas = false;
  std::string interpolation_type = "linear";
  bool rescale_betas_zero_snr = false;
  // EDM schedulers (EDMEulerScheduler, EDMDPMSolverMultistepScheduler; Playground v2.5): Karras
  // sigmas between sigma_min and sigma_max, preconditioned with sigma_data.
  double sigma_min = 0.002;
  double sigma_max = 80.0;
  double sigma_data = 0.5;
  double rho = 7.0;
  // The scheduler class is an EDM one: such a base is trained EDM-style and sampled with EDM solvers.
  bool edm() const { return class_name.rfind("EDM", 0) == 0; }

  static SchedulerConfig from_json(const JsonConfig& json);
  static SchedulerConfig load(const std::filesystem::path& path) { return from_json(JsonConfig::load(path)); }
};

}  // namespace sdxl::model
