#include "sdxl_dreambooth/train/lr_schedule.h"

#include "sdxl_dreambooth/error.h"

#include <algorithm>
#include <cmath>

namespace sdxl::train {
namespace {

constexpr double kPi = 3.14159265358979323846;

double warmup(std::int64_t step, std::int64_t warmup_steps) {
  return static_cast<double>(step) / static_cast<double>(std::max<std::int64_t>(1, warmup_steps));
}

}  // namespace

LrSchedule::LrSchedule(LrScheduleOptions options) : options_(std::move(options)) {
  static const char* kinds[] = {"constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts",
                                "polynomial"};
  if (std::find(std::begin(kinds), std::end(kinds), options_.kind) == std::end(kinds)) {
    throw UsageError("unknown learning-rate schedule \"" + options_.kind + "\"");
  }
  // Checked here, before any data is encoded, not at the first step.
  if (options_.kind == "polynomial" && !(options_.base_lr > options_.lr_end)) {
    throw UsageError("train.lr_scheduler = \"polynomial\" decays to " + std::to_string(options_.lr_end) +
                     ", so train.learning_rate must be above it (got " + std::to_string(options_.base_lr) + ")");
  }
}

double LrSchedule::lr(std::int64_t completed_steps) const { return options_.base_lr * multiplier(completed_steps); }

double LrSchedule::multiplier(std::int64_t s) const {
  // ref: diffusers/optimization.py (get_*_schedule_with_warmup lambdas).
  const auto& o = options_;
  const std::int64_t W = o.warmup_steps, T = o.total_steps;
  if (o.kind == "constant") return 1.0;
  if (o.kind == "constant_with_warmup") return s < W ? warmup(s, W) : 1.0;
  if (s < W) return warmup(s, W);
  const double progress = static_cast<double>(s - W) / static_cast<double>(std::max<std::int64_t>(1, T - W));
  if (o.kind == "linear") {
    return std::max(0.0, static_cast<double>(T - s) / static_cast<double>(std::max<std::int64_t>(1, T - W)));
  }
  if (o.kind == "cosine") {
    const double num_cycles = 0.5;  // diffusers' default; get_scheduler does not pass lr_num_cycles here
    return std::max(0.0, 0.5 * (1.0 + std::cos(kPi * num_cycles * 2.0 * progress)));
  }
  if (o.kind == "cosine_with_restarts") {
    if (progress >= 1.0) return 0.0;
    return std::max(0.0, 0.5 * (1.0 + std::cos(kPi * std::fmod(static_cast<double>(o.num_cycles) * progress, 1.0))));
  }
  // polynomial
  const double lr_init = o.base_lr;
  if (s > T) return o.lr_end / lr_init;
  const double lr_range = lr_init - o.lr_end;
  const double decay_steps = static_cast<double>(std::max<std::int64_t>(1, T - W));
  const double pct_remaining = 1.0 - static_cast<double>(s - W) / decay_steps;
  return (lr_range * std::pow(pct_remaining, o.power) + o.lr_end) / lr_init;
}

}  // namespace sdxl::train
