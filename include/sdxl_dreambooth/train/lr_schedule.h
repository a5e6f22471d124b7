// Learning-rate schedules with the semantics of diffusers' `get_scheduler` (the
// transformers-style LambdaLR multipliers), indexed by completed optimizer steps.
#pragma once

#include <cstdint>
#include <string>

namespace sdxl::train {

struct LrScheduleOptions {
  std::string kind = "constant";  // constant | constant_with_warmup | linear | cosine | cosine_with_restarts | polynomial
  double base_lr = 1e-4;
  std::int64_t warmup_steps = 0;
  std::int64_t total_steps = 1;
  std::int64_t num_cycles = 1;  // cosine_with_restarts only (diffusers passes it to no other kind)
  double power = 1.0;           // polynomial only
  double lr_end = 1e-7;         // polynomial's final value, as in diffusers
};

class LrSchedule {
 public:
  // Throws UsageError for an unknown kind.
  explicit LrSchedule(LrScheduleOptions options);
  // The learning rate of the optimizer step that follows `completed_steps` earlier steps.
  double lr(std::int64_t completed_steps) const;
  // lr(step) / base_lr.
  double multiplier(std::int64_t completed_steps) const;
  const LrScheduleOptions& options() const { return options_; }

 private:
  LrScheduleOptions options_;
};

}  // namespace sdxl::train
