#include "sdxl_dreambooth/train/step_plan.h"

#include "sdxl_dreambooth/error.h"

#include <numeric>
#include <utility>

namespace sdxl::train {
namespace {

std::int64_t count_steps_per_epoch(const DataOrder& order, std::int64_t grad_accum) {
  return (order.batches_per_epoch() + grad_accum - 1) / grad_accum;
}

double peak_learning_rate(const config::TrainConfig& train, int world) {
  if (!train.scale_lr) return train.learning_rate;
  return train.learning_rate * static_cast<double>(train.grad_accum * train.batch_size * world);
}

LrScheduleOptions lr_options(const config::TrainConfig& train, double learning_rate, std::int64_t max_steps) {
  LrScheduleOptions lo;
  lo.kind = train.lr_scheduler;
  lo.base_lr = learning_rate;
  lo.warmup_steps = train.lr_warmup_steps;
  lo.total_steps = max_steps;
  lo.num_cycles = train.lr_num_cycles;
  lo.power = train.lr_power;
  return lo;
}

// diffusers' DataLoader gives one shorter batch when train_batch_size exceeds the dataset; a
// rank's batch here is always full, so it would hold the same image several times. Refused.
// Over several ranks, a global batch larger than the data repeats images across ranks, as
// accelerate's even_batches does: allowed.
std::int64_t checked_batch_size(const config::TrainConfig& train, std::int64_t dataset_size) {
  if (train.batch_size > dataset_size) {
    throw UsageError("train.batch_size = " + std::to_string(train.batch_size) + " exceeds the " +
                         std::to_string(dataset_size) + " training examples (images x data.repeats)",
                     "lower train.batch_size to at most " + std::to_string(dataset_size) +
                         " (train.grad_accum gives larger effective batches), or raise data.repeats");
  }
  return train.batch_size;
}

}  // namespace

StepPlan::StepPlan(const config::TrainConfig& train, bool with_prior, std::vector<std::int64_t> groups, int world,
                   std::uint64_t seed, bool mixed)
    : batch_size(checked_batch_size(train, std::accumulate(groups.begin(), groups.end(), std::int64_t{0}) /
                                               (mixed ? 2 : 1))),
      grad_accum(train.grad_accum),
      prior(with_prior),
      mixed_prior(mixed),
      world_size(world),
      order(std::move(groups), batch_size * (mixed ? 2 : 1), world, seed),
      steps_per_epoch(count_steps_per_epoch(order, grad_accum)),
      max_steps(train.max_steps.value_or(train.epochs * steps_per_epoch)),
      learning_rate(peak_learning_rate(train, world)),
      lr(lr_options(train, learning_rate, max_steps)) {}

}  // namespace sdxl::train
