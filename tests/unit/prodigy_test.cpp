// Prodigy (optimizer.kind = "prodigy") against its update written out by hand: the first step,
// the second step's step-size estimate, parameter groups with their own weight decay, and
// parameters without a gradient left alone; AdamW over groups against single AdamWs.
#include "sdxl_dreambooth/train/adamw.h"
#include "sdxl_dreambooth/train/prodigy.h"
#include "support/tensors.h"

#include <gtest/gtest.h>

#include <cmath>

using namespace sdxl;

namespace {

torch::Tensor leaf(std::vector<float> values) { return torch::tensor(values); }

}  // namespace

// Step 1 with prodigyopt's defaults: d stays d0 (no progress yet: p0 = p), and each element
// moves by d0·lr·(1 - β1)·g / (√(1 - β2)·|g| + eps).
TEST(Prodigy, FirstStepIsAdamAtStepSizeD0) {
  // Small weights, so that float32 resolves the 3e-6 steps.
  torch::Tensor p = leaf({0.005f, -0.01f, 0.02f});
  const torch::Tensor start = p.clone();
  train::ProdigyOptions o;
  o.use_bias_correction = false;
  o.safeguard_warmup = false;
  train::Prodigy opt({{{p}, 1.0, 0.0}}, o);
  const torch::Tensor g = leaf({0.1f, -0.2f, 0.0f});
  opt.step(1.0, g, {true});
  const double d0 = 1e-6;
  const torch::Tensor expected =
      start - d0 * (1 - 0.9) * g.to(torch::kDouble) / (std::sqrt(1 - 0.999) * g.to(torch::kDouble).abs() + 1e-8);
  EXPECT_TENSOR_NEAR(p.to(torch::kDouble), expected, 5e-9);
  EXPECT_EQ(opt.d(), d0);
  EXPECT_EQ(opt.steps_taken(0), 1);
}

// Step 2: d = max(d0, Σ (d/d0)·dlr·⟨g₂, p0 - p⟩ / ‖β3·s₁ + dlr·g₂‖₁) with s₁ = dlr·g₁.
TEST(Prodigy, SecondStepEstimatesTheStepSize) {
  torch::Tensor p = leaf({0.5f, -1.0f, 2.0f, 0.25f});
  const torch::Tensor p0 = p.clone();
  train::ProdigyOptions o;
  o.use_bias_correction = false;
  o.safeguard_warmup = false;
  o.d0 = 1e-3;
  train::Prodigy opt({{{p}, 1.0, 0.0}}, o);
  const torch::Tensor g1 = leaf({0.1f, -0.2f, 0.3f, 0.05f});
  const torch::Tensor g2 = leaf({0.12f, -0.1f, 0.25f, 0.07f});
  const double lr = 1.0;  // the first step then moves far enough for the estimate to grow
  opt.step(lr, g1, {true});
  const torch::Tensor p1 = p.clone();
  opt.step(lr, g2, {true});
  const double d0 = 1e-3, dlr = d0 * lr, beta3 = std::sqrt(0.999);
  const double numerator = dlr * torch::dot(g2.to(torch::kDouble), (p0 - p1).to(torch::kDouble)).item<double>();
  const double denom = (beta3 * dlr * g1.to(torch::kDouble) + dlr * g2.to(torch::kDouble)).abs().sum().item<double>();
  EXPECT_NEAR(opt.d(), std::max(d0, numerator / denom), 1e-9);
  EXPECT_GT(opt.d(), d0);
  EXPECT_EQ(opt.scalars().at("d_max"), opt.d());
}

// Each group decays by its own weight decay (decoupled: p -= wd·dlr·p); a parameter without
// a gradient keeps its value and state; a step without any gradient changes nothing, not k.
TEST(Prodigy, GroupsAndParametersWithoutGradients) {
  torch::Tensor a = leaf({1.0f, 2.0f}), b = leaf({3.0f}), c = leaf({-4.0f, 5.0f});
  train::Prodigy opt({{{a}, 1.0, 0.0}, {{b, c}, 0.1, 0.5}}, {});
  const torch::Tensor c_before = c.clone();
  opt.step(1.0, torch::zeros({5}), {false, false, false});
  EXPECT_EQ(opt.steps_taken(0), 0);
  opt.step(1000.0, leaf({0.1f, 0.1f, 0.0f, 1.0f, 1.0f}), {true, true, false});
  EXPECT_TRUE(torch::equal(c, c_before));
  EXPECT_EQ(opt.state(1, 1, 0).abs().sum().item<double>(), 0.0);  // c's exp_avg
  // b had a zero gradient: only the decay moved it, by 0.5 · dlr (d0 · lr = 1e-3) of its value.
  EXPECT_NEAR(b.item<double>(), 3.0 * (1 - 0.5 * 1e-3), 3e-7);
  EXPECT_EQ(opt.steps_taken(1), 1);
  // The state is views of the optimizer's buffers, in group order.
  EXPECT_TRUE(torch::equal(opt.state(0, 0, 3), leaf({1.0f, 2.0f})));  // a's p0
}

TEST(AdamWGroups, EachGroupIsAnAdamWAtItsShareOfTheRate) {
  torch::Tensor a = leaf({1.0f, 2.0f}), b = leaf({3.0f, -1.0f});
  torch::Tensor a2 = a.clone(), b2 = b.clone();
  train::AdamWGroups groups({{{a}, 1.0, 0.01}, {{b}, 0.25, 0.5}}, {});
  train::AdamW solo_a({a2}, {0.9, 0.999, 1e-8, 0.01}), solo_b({b2}, {0.9, 0.999, 1e-8, 0.5});
  const torch::Tensor g = leaf({0.3f, -0.1f, 0.2f, 0.4f});
  for (int i = 0; i < 3; ++i) {
    groups.step(1e-2, g, {true, true});
    solo_a.step(1e-2, g.narrow(0, 0, 2), {true});
    solo_b.step(0.25e-2, g.narrow(0, 2, 2), {true});
  }
  EXPECT_TRUE(torch::equal(a, a2));
  EXPECT_TRUE(torch::equal(b, b2));
  EXPECT_EQ(groups.steps_taken(1), 3);
  EXPECT_TRUE(torch::equal(groups.state(1, 0, 1), solo_b.exp_avg_sq()[0]));
}
