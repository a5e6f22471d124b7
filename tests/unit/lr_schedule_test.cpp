// Learning-rate multipliers against diffusers' get_scheduler lambdas at known points.
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/train/lr_schedule.h"

#include <gtest/gtest.h>

using namespace sdxl;

namespace {
double mult(const std::string& kind, std::int64_t s, std::int64_t warmup, std::int64_t total, std::int64_t cycles = 1,
            double power = 1.0) {
  train::LrScheduleOptions o;
  o.kind = kind;
  o.base_lr = 1e-3;
  o.warmup_steps = warmup;
  o.total_steps = total;
  o.num_cycles = cycles;
  o.power = power;
  return train::LrSchedule(o).multiplier(s);
}
}  // namespace

TEST(LrSchedule, MatchesDiffusersLambdas) {
  EXPECT_DOUBLE_EQ(mult("constant", 0, 10, 100), 1.0);
  EXPECT_DOUBLE_EQ(mult("constant_with_warmup", 0, 10, 100), 0.0);
  EXPECT_DOUBLE_EQ(mult("constant_with_warmup", 5, 10, 100), 0.5);
  EXPECT_DOUBLE_EQ(mult("constant_with_warmup", 10, 10, 100), 1.0);
  EXPECT_DOUBLE_EQ(mult("linear", 5, 10, 110), 0.5);
  EXPECT_DOUBLE_EQ(mult("linear", 60, 10, 110), 0.5);
  EXPECT_DOUBLE_EQ(mult("linear", 200, 10, 110), 0.0);
  EXPECT_NEAR(mult("cosine", 50, 0, 100), 0.5, 1e-12);
  EXPECT_NEAR(mult("cosine", 100, 0, 100), 0.0, 1e-12);
  EXPECT_NEAR(mult("cosine_with_restarts", 25, 0, 100, 2), 0.5, 1e-12);
  EXPECT_NEAR(mult("cosine_with_restarts", 50, 0, 100, 2), 1.0, 1e-12);
  EXPECT_DOUBLE_EQ(mult("cosine_with_restarts", 100, 0, 100, 2), 0.0);
  EXPECT_NEAR(mult("polynomial", 50, 0, 100), ((1e-3 - 1e-7) * 0.5 + 1e-7) / 1e-3, 1e-12);
  EXPECT_NEAR(mult("polynomial", 50, 0, 100, 1, 2.0), ((1e-3 - 1e-7) * 0.25 + 1e-7) / 1e-3, 1e-12);
  EXPECT_NEAR(mult("polynomial", 500, 0, 100), 1e-7 / 1e-3, 1e-15);
}

TEST(LrSchedule, UnknownKindIsAUsageError) {
  train::LrScheduleOptions o;
  o.kind = "exponential";
  EXPECT_THROW(train::LrSchedule{o}, UsageError);
  o.kind = "polynomial";
  o.base_lr = 1e-8;  // below polynomial's end value
  EXPECT_THROW(train::LrSchedule{o}, UsageError);
}
