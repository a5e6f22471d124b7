// The checks a run can fail with a configuration error (exit 2), made on rank 0 before it
// writes anything: the base model (and a separate VAE) resolve, the image folders exist and
// hold images, output.dir and checkpoint.dir are (or can be created as) writable folders, and
// an explicit checkpoint.resume names a readable file. A run refused here leaves every file
// as it was and creates none.
#pragma once

#include "sdxl_dreambooth/config/run_config.h"
#include "sdxl_dreambooth/train/run_settings.h"

namespace sdxl::train {

void check_run_inputs(const config::RunConfig& cfg, const RunSettings& settings);

}  // namespace sdxl::train
