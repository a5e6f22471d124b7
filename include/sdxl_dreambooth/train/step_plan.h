// How many steps a run takes and what each one reads: the per-rank batch, accumulation, the
// shuffled data order of every epoch, the learning-rate schedule over max_steps.
// train.scale_lr multiplies the peak learning rate by grad_accum × batch_size × ranks, as
// diffusers' --scale_lr (the text encoders' lora.text_encoder_lr is not scaled, as there).
#pragma once

#include "sdxl_dreambooth/config/run_config.h"
#include "sdxl_dreambooth/train/data_order.h"
#include "sdxl_dreambooth/train/lr_schedule.h"

#include <cstdint>
#include <vector>

namespace sdxl::train {

struct StepPlan {
  // `groups`: examples per group of the data order (one, or one per aspect-ratio bucket).
  // `mixed_prior`: class examples are in those groups (train/prior_mix.h), and a micro-batch
  // draws 2 × batch_size of them, as many rows as instance + paired class rows.
  StepPlan(const config::TrainConfig& train, bool prior, std::vector<std::int64_t> groups, int world_size,
           std::uint64_t seed, bool mixed_prior = false);

  std::int64_t batch_size;  // examples per rank per micro-batch
  std::int64_t grad_accum;
  bool prior;
  bool mixed_prior;  // class examples in the data order (train/prior_mix.h)
  int world_size;
  DataOrder order;
  std::int64_t steps_per_epoch;
  std::int64_t max_steps;  // train.max_steps, else train.epochs epochs
  double learning_rate;    // the UNet's peak rate: train.learning_rate, scaled by train.scale_lr
  LrSchedule lr;

  // Examples the data order gives per optimizer step over all ranks: instance examples, or
  // with mixed prior preservation instance and class examples.
  std::int64_t examples_per_step() const { return batch_size * grad_accum * world_size * (mixed_prior ? 2 : 1); }
  // UNet rows per optimizer step over all ranks (class rows included).
  std::int64_t images_per_step() const { return batch_size * grad_accum * world_size * (prior ? 2 : 1); }
  // Micro-batch `micro` of optimizer step `step` (0-based), this rank's dataset rows.
  std::vector<std::int64_t> rows(std::int64_t step, std::int64_t micro, int rank) const {
    return order.batch(step * grad_accum + micro, rank);
  }
};

}  // namespace sdxl::train
