#include "sdxl_dreambooth/train/step_plan.h"

namespace sdxl::train {
namespace {

std::int64_t count_steps_per_epoch(const DataOrder& order, std::int64_t grad_accum) {
  return (order.batches_per_epoch() + grad_accum - 1) / grad_accum;
}

LrScheduleOptions lr_options(const config::TrainConfig& train, std::int64_t max_steps) {
  LrScheduleOptions lo;
  lo.kind = train.lr_scheduler;
  lo.base_lr = train.learning_rate;
  lo.warmup_steps = train.lr_warmup_steps;
  lo.total_steps = max_steps;
  lo.num_cycles = train.lr_num_cycles;
  lo.power = train.lr_power;
  return lo;
}

}  // namespace

StepPlan::StepPlan(const config::TrainConfig& train, bool with_prior, std::int64_t dataset_size, int world,
                   std::uint64_t seed)
    : batch_size(train.batch_size),
      grad_accum(train.grad_accum),
      prior(with_prior),
      world_size(world),
      order(dataset_size, batch_size, world, seed),
      steps_per_epoch(count_steps_per_epoch(order, grad_accum)),
      max_steps(train.max_steps.value_or(train.epochs * steps_per_epoch)),
      lr(lr_options(train, max_steps)) {}

}  // namespace sdxl::train
