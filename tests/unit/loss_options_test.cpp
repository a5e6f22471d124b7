// train.loss, train.huber_c / huber_schedule and train.multires_noise_*: kohya's pseudo-Huber
// losses and pyramid noise against their formulas worked by hand.
#include "sdxl_dreambooth/train/diffusion_loss.h"
#include "sdxl_dreambooth/train/training_batch.h"
#include "support/tensors.h"

#include <gtest/gtest.h>

#include <cmath>

using namespace sdxl;

TEST(LossOptions, PseudoHuberFollowsKohyasFormula) {
  // d = 0.3, c = 0.1: huber 2c(√(d² + c²) - c), smooth_l1 2(√(d² + c²) - c).
  const auto pred = torch::full({1, 1, 1, 2}, 0.5), target = torch::tensor({0.2f, 0.5f}).view({1, 1, 1, 2});
  const auto c = torch::tensor({0.1f});
  const double root = std::sqrt(0.09 + 0.01) - 0.1;
  const auto huber = train::pseudo_huber(pred, target, c, "huber");
  EXPECT_NEAR(huber.flatten()[0].item<double>(), 2 * 0.1 * root, 1e-7);
  EXPECT_NEAR(huber.flatten()[1].item<double>(), 0.0, 1e-9);  // no difference, no loss
  EXPECT_NEAR(train::pseudo_huber(pred, target, c, "smooth_l1").flatten()[0].item<double>(), 2 * root, 1e-6);
  // Large differences grow linearly (slope 2c), small ones quadratically (≈ d²).
  const auto far = train::pseudo_huber(torch::full({1, 1}, 10.0), torch::zeros({1, 1}), c, "huber").item<double>();
  EXPECT_NEAR(far, 2 * 0.1 * (std::sqrt(100.01) - 0.1), 1e-5);
  const auto near = train::pseudo_huber(torch::full({1, 1}, 1e-3), torch::zeros({1, 1}), c, "huber").item<double>();
  EXPECT_NEAR(near, 1e-6, 1e-8);  // √(c² + d²) - c cancels in float32 (as in kohya's)
}

TEST(LossOptions, HuberScheduleGivesEachExampleItsC) {
  model::SchedulerConfig config;
  const sampling::NoiseSchedule schedule(config);
  const auto t = torch::tensor({0L, 500L, 999L});
  train::LossOptions o;
  o.huber_c = 0.1;
  o.huber_schedule = "constant";
  EXPECT_TENSOR_NEAR(train::huber_c(schedule, t, o), torch::full({3}, 0.1), 1e-7);
  o.huber_schedule = "exponential";  // c^(t/T): 1 at t = 0, c at t = T
  const auto e = train::huber_c(schedule, t, o);
  EXPECT_NEAR(e[0].item<double>(), 1.0, 1e-7);
  EXPECT_NEAR(e[1].item<double>(), std::pow(0.1, 0.5), 1e-6);
  EXPECT_NEAR(e[2].item<double>(), std::pow(0.1, 0.999), 1e-6);
  o.huber_schedule = "snr";  // (1 - c)/(1 + σ)² + c, σ = √((1 - ᾱ)/ᾱ)
  const auto s = train::huber_c(schedule, t, o);
  for (std::int64_t i = 0; i < 3; ++i) {
    const double ac = schedule.alphas_cumprod()[t[i].item<std::int64_t>()].item<double>();
    const double sigma = std::sqrt((1 - ac) / ac);
    EXPECT_NEAR(s[i].item<double>(), 0.9 / std::pow(1 + sigma, 2) + 0.1, 1e-6) << i;
  }
  EXPECT_GT(s[0].item<double>(), s[2].item<double>());  // lenient at low noise, strict at high
}

// One level: noise + upsample(randn at size / r^0 = full size) · discount⁰, rescaled to unit std;
// the generator's draws are r, then the level.
TEST(LossOptions, PyramidNoiseIsKohyas) {
  const auto noise = torch::randn({2, 4, 8, 8});
  auto gen = at::detail::createCPUGenerator(7);
  const auto got = train::pyramid_noise(noise.clone(), 1, 0.3, gen);
  auto replay = at::detail::createCPUGenerator(7);
  (void)at::rand({1}, replay, torch::kFloat);
  const auto level = at::randn({2, 4, 8, 8}, replay, torch::kFloat);
  const auto sum = noise + level;
  EXPECT_TENSOR_NEAR(got, sum / sum.std(), 1e-6);
  // Many levels: coarser and coarser until one pixel; unit standard deviation either way.
  auto gen2 = at::detail::createCPUGenerator(3);
  const auto deep = train::pyramid_noise(torch::randn({1, 4, 64, 64}), 10, 0.8, gen2);
  EXPECT_NEAR(deep.std().item<double>(), 1.0, 1e-5);
  EXPECT_EQ(deep.sizes(), (std::vector<std::int64_t>{1, 4, 64, 64}));
}
