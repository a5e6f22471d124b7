// Before anything is trained (or written): does one micro-batch fit the device at all? The
// estimate is a lower bound — the loaded weights plus, per UNet row of the micro-batch, what an
// inference pass alone keeps alive at its peak (pipeline/activation_memory.h, attention scores
// not counted); a training step keeps more. When even that exceeds the device (CUDA: its total
// memory; CPU: the memory available now on this node), the run is refused as a configuration
// error naming the figures, instead of being killed by the OOM killer minutes later. It never
// refuses a step that would fit.
#pragma once

#include "sdxl_dreambooth/config/run_config.h"
#include "sdxl_dreambooth/dist/host_collectives.h"
#include "sdxl_dreambooth/pipeline/sdxl_pipeline.h"
#include "sdxl_dreambooth/train/run_settings.h"

#include <cstdint>
#include <string>

namespace sdxl::train {

struct StepMemoryBound {
  double weights_bytes = 0;
  double activation_bytes = 0;  // the micro-batch's rows
  std::int64_t rows = 0;
  double total() const { return weights_bytes + activation_bytes; }
};

StepMemoryBound step_memory_lower_bound(const pipeline::SdxlPipeline& pipe, const config::TrainConfig& train,
                                        const RunSettings& settings);

// Throws UsageError on every rank when the bound exceeds some rank's device.
void check_step_fits(const pipeline::SdxlPipeline& pipe, const config::TrainConfig& train,
                     const RunSettings& settings, dist::HostCollectives& comm);

}  // namespace sdxl::train
