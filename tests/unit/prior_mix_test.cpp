// Prior preservation with examples of several sizes (train/prior_mix.h): class examples join
// the groups of their size, as many per subset as its instance examples; the loss of a mixed
// micro-batch sums each part over half the rows, which for a half-and-half batch is diffusers'
// instance mean + weight × class mean.
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/train/diffusion_loss.h"
#include "sdxl_dreambooth/train/prior_mix.h"
#include "support/small_unet.h"

#include <gtest/gtest.h>

using namespace sdxl;
using train::ExampleRef;

TEST(PriorMix, ClassExamplesJoinTheGroupOfTheirSizeAsManyAsTheSubsetsInstances) {
  const std::vector<data::BucketSize> instance_sizes{{48, 80}, {64, 64}}, class_sizes{{64, 64}};
  train::SubsetExamples a, b;
  // Subset a: three instance examples in two sizes, two class images (cycled to three).
  a.instance = {{false, 0, 0}, {false, 1, 0}, {false, 0, 1}};
  a.klass = {{true, 0, 0}, {true, 0, 1}};
  // Subset b: one instance example, four class images (the instance example cycles to four).
  b.instance = {{false, 1, 1}};
  b.klass = {{true, 0, 2}, {true, 0, 3}, {true, 0, 4}, {true, 0, 5}};
  const train::PriorMix mix({a, b}, instance_sizes, class_sizes);
  ASSERT_EQ(mix.group_sizes(), (std::vector<std::int64_t>{2, 12}));
  EXPECT_EQ(mix.group_size(0).name(), "48x80");
  EXPECT_EQ(mix.group_size(1).name(), "64x64");
  EXPECT_EQ(mix.class_examples(0), 0);
  EXPECT_EQ(mix.class_examples(1), 7);  // 3 of a's, 4 of b's
  EXPECT_EQ(mix.size(), 14);
  // Group 1 in order: a's square instance, a's class rows 0 1 0, b's instance four times, b's class rows.
  std::vector<std::int64_t> rows;
  for (std::int64_t i = 2; i < 14; ++i) rows.push_back(mix.example(i).row * (mix.example(i).klass ? -1 : 1));
  EXPECT_EQ(rows, (std::vector<std::int64_t>{0, 0, -1, 0, 1, 1, 1, 1, -2, -3, -4, -5}));
  EXPECT_THROW(mix.example(14), Error);
}

namespace {

train::DiffusionBatch batch_of_four() {
  torch::manual_seed(5);
  train::DiffusionBatch b;
  b.latents = torch::randn({4, 4, 8, 8});
  b.noise = torch::randn({4, 4, 8, 8});
  b.timesteps = torch::tensor({10L, 300L, 600L, 900L});
  b.prompt_embeds = torch::randn({4, 7, 24});
  b.text_embeds = torch::randn({4, 8});
  b.time_ids = torch::rand({4, 6}) * 64;
  return b;
}

double value(const torch::Tensor& t) { return t.item<double>(); }

}  // namespace

TEST(PriorMix, AHalfAndHalfBatchLosesWhatDiffusersPairsLose) {
  torch::NoGradGuard no_grad;
  auto unet = test::small_unet();
  const sampling::NoiseSchedule schedule{model::SchedulerConfig{}};
  for (const bool snr : {false, true}) {
    train::LossOptions o;
    o.with_prior = true;
    o.prior_loss_weight = 0.7;
    if (snr) o.snr_gamma = 5.0;
    train::DiffusionBatch b = batch_of_four();
    const train::LossResult paired = train::diffusion_loss(unet, schedule, b, o);
    b.instance_rows = 2;
    const train::LossResult mixed = train::diffusion_loss(unet, schedule, b, o);
    EXPECT_NEAR(value(mixed.loss), value(paired.loss), 1e-6) << snr;
    EXPECT_NEAR(value(mixed.instance_loss), value(paired.instance_loss), 1e-6) << snr;
    EXPECT_NEAR(value(mixed.prior_loss), value(paired.prior_loss), 1e-6) << snr;
  }
}

TEST(PriorMix, EachRowOfAMixedBatchWeighsOneHalfBatchItsKindsWeight) {
  torch::NoGradGuard no_grad;
  auto unet = test::small_unet();
  const sampling::NoiseSchedule schedule{model::SchedulerConfig{}};
  train::DiffusionBatch b = batch_of_four();
  train::LossOptions plain;  // the mean of the four rows' losses
  const double mean = value(train::diffusion_loss(unet, schedule, b, plain).loss);
  train::LossOptions o;
  o.with_prior = true;
  o.prior_loss_weight = 0.7;
  o.snr_gamma = 5.0;  // weighs instance rows only
  b.instance_rows = 0;  // four class rows: 0.7 × (sum / 2), no SNR weights
  const train::LossResult all_class = train::diffusion_loss(unet, schedule, b, o);
  EXPECT_NEAR(value(all_class.loss), 0.7 * 2 * mean, 1e-6);
  EXPECT_NEAR(value(all_class.instance_loss), 0.0, 0.0);
  b.instance_rows = 4;  // four instance rows: their SNR-weighted losses summed over 2
  train::LossOptions weighted;
  weighted.snr_gamma = 5.0;
  const double weighted_mean = value(train::diffusion_loss(unet, schedule, b, weighted).loss);
  const train::LossResult all_instance = train::diffusion_loss(unet, schedule, b, o);
  EXPECT_NEAR(value(all_instance.loss), 2 * weighted_mean, 1e-6);
  EXPECT_NEAR(value(all_instance.prior_loss), 0.0, 0.0);
}
