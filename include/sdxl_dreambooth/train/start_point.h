// Where a run starts, agreed by every rank before the model loads: the seed (an unset
// train.seed is drawn on rank 0) and the checkpoint to continue, if any. Rank 0 fingerprints
// the base model, picks and reads the checkpoint and checks that it fits this config; its
// scalars reach every rank in one broadcast.
#pragma once

#include "sdxl_dreambooth/config/run_config.h"
#include "sdxl_dreambooth/dist/host_collectives.h"
#include "sdxl_dreambooth/model/model_fingerprint.h"
#include "sdxl_dreambooth/train/run_settings.h"
#include "sdxl_dreambooth/train/training_checkpoint.h"
#include "sdxl_dreambooth/util/logger.h"

#include <cstdint>
#include <optional>
#include <vector>

namespace sdxl::train {

struct StartPoint {
  bool resumed = false;
  std::int64_t step = 0;  // optimizer steps already done
  double loss_scale = 0;
  std::int64_t loss_scale_good_steps = 0;
  std::int64_t skipped_steps = 0;
  // Rank 0 only: the checkpoint read (when resumed) and the base model's weight files.
  std::optional<ResumePoint> checkpoint;
  model::ModelFingerprint fingerprint;
};

// Sets settings.seed to the agreed seed (the checkpoint's when resuming).
StartPoint agree_on_start(const config::RunConfig& cfg, RunSettings& settings, const Logger& log,
                          dist::HostCollectives& comm);

// What a checkpoint must match to be continued by this config.
std::vector<AdapterSettings> adapter_settings(const config::LoraConfig& lora);

}  // namespace sdxl::train
