// A DreamBooth LoRA training run from a validated configuration: load the base pipeline,
// generate missing class images, encode every image and prompt once, wrap the UNet's
// attention projections with LoRA, run the steps (gradient accumulation, clipping, AdamW, LR
// schedule, fp16 loss scaling), validate, and export the LoRA for diffusers. With several
// ranks each encodes its share of the images, gradients are averaged with one all-reduce per
// step, and validation images are split across ranks.
#pragma once

#include "sdxl_dreambooth/config/run_config.h"
#include "sdxl_dreambooth/dist/collectives.h"
#include "sdxl_dreambooth/train/preemption.h"
#include "sdxl_dreambooth/train/train_step.h"
#include "sdxl_dreambooth/util/logger.h"

#include <cstdint>
#include <string>
#include <vector>

namespace sdxl::train {

struct TrainSummary {
  std::int64_t steps = 0;
  std::int64_t skipped_steps = 0;  // fp16 steps skipped for non-finite gradients
  std::vector<double> losses;      // per optimizer step (mean over micro-batches)
  std::string lora_path;            // diffusers' keys (rank 0)
  std::string kohya_lora_path;      // kohya's keys, "" without output.kohya (rank 0)
  std::uint64_t seed = 0;
  StepTimes times;                 // summed over the run
  double images_per_second = 0;   // over the steps of this job
  double train_seconds = 0;       // the steps of this job, without the final validation and checkpoint
  std::uint64_t peak_rss_bytes = 0;
  std::int64_t start_step = 0;      // > 0 when resumed from a checkpoint
  std::string last_checkpoint;      // path of the newest checkpoint written (rank 0)
  bool preempted = false;           // stopped on SIGUSR1/SIGTERM after checkpointing
};

// Every rank of `comm` calls this with the same config. Rank 0 checks the inputs and locks
// output.dir (preflight.h, io/folder_lock.h) before it writes anything, then writes the
// outputs; all ranks hold identical LoRA weights after every step (checked). `local_rank`
// picks the GPU. `signals`, installed before MPI and the config are set up, request a stop:
// before the first step at the next phase boundary (nothing to save), later at the next step
// with a checkpoint; either way summary.preempted.
TrainSummary run_training(const config::RunConfig& config, const Logger& log, dist::Collectives& comm, int local_rank,
                          const PreemptionSignals& signals);

}  // namespace sdxl::train
