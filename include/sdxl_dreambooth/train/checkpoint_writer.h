// Writing a training checkpoint during a run: rank 0 captures the adapters, AdamW state,
// scalars, metrics, the latest validation images, the config and the base model's
// fingerprint into one HDF5 file (checkpoint_file.h), prunes to checkpoint.keep_last, and
// every rank waits until it is committed, so nobody moves on (or exits, on preemption) while
// rank 0 is still writing.
#pragma once

#include "sdxl_dreambooth/config/run_config.h"
#include "sdxl_dreambooth/dist/host_collectives.h"
#include "sdxl_dreambooth/model/model_fingerprint.h"
#include "sdxl_dreambooth/train/checkpoint_file.h"
#include "sdxl_dreambooth/train/loss_scaler.h"
#include "sdxl_dreambooth/train/run_settings.h"
#include "sdxl_dreambooth/train/step_plan.h"
#include "sdxl_dreambooth/train/trained_adapters.h"
#include "sdxl_dreambooth/util/logger.h"

#include <cstdint>
#include <string>
#include <vector>

namespace sdxl::train {

// What a run has done so far, as a checkpoint records it.
struct RunProgress {
  std::int64_t step = 0;  // optimizer steps done
  const DynamicLossScaler* scaler = nullptr;
  std::int64_t skipped_steps = 0;
  const std::vector<MetricsRow>* metrics = nullptr;   // rank 0
  const std::vector<SampleImage>* samples = nullptr;  // rank 0
  torch::Tensor progress_grid;                         // rank 0, when validation has run
};

class CheckpointWriter {
 public:
  // `fingerprint`: the base model's, from rank 0 (empty elsewhere).
  CheckpointWriter(const config::RunConfig& cfg, const RunSettings& settings, const StepPlan& plan,
                   const TrainedAdapters& adapters, model::ModelFingerprint fingerprint, const Logger& log);
  // Returns the checkpoint's path on rank 0, "" elsewhere.
  std::string write(const RunProgress& progress, dist::HostCollectives& comm) const;

 private:
  Checkpoint capture(const RunProgress& progress) const;

  const config::RunConfig& cfg_;
  const RunSettings& settings_;
  const StepPlan& plan_;
  const TrainedAdapters& adapters_;
  model::ModelFingerprint fingerprint_;
  const Logger& log_;
};

}  // namespace sdxl::train
