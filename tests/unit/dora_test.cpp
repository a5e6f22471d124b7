// DoRA adapters (lora.use_dora): the forward formula and its gradients against peft 0.10's
// written out by hand, the magnitude's initialisation, merging at any strength equal to the
// run-time layer, and the fused attention projections equal to separate ones.
#include "sdxl_dreambooth/nn/attention.h"
#include "sdxl_dreambooth/nn/lora_network.h"
#include "support/tensors.h"

#include <gtest/gtest.h>

using namespace sdxl;

namespace {

namespace F = torch::nn::functional;

// A DoRA layer with a bias, non-zero B and a magnitude away from its initial value.
nn::LoraCompatibleLinear dora_layer() {
  torch::manual_seed(4);
  nn::LoraCompatibleLinear lin(6, 5, true);
  auto gen = at::detail::createCPUGenerator(2);
  lin->add_lora(3, 6.0, gen);
  lin->add_dora();
  torch::NoGradGuard no_grad;
  lin->lora_B->weight.normal_(0.0, 0.3, gen);
  lin->lora_magnitude.mul_(torch::rand({5}, gen) + 0.5);
  return lin;
}

// peft 0.10 LoraLayer with use_dora, as written there: base(x) + (m/n - 1) ⊙ W x + (m/n) ⊙ s·B(A x),
// n = ‖W + s·B A‖ per output row, detached.
torch::Tensor peft_dora(const nn::LoraCompatibleLinear& lin, const torch::Tensor& x) {
  const double s = lin->lora_alpha() / static_cast<double>(lin->lora_rank());
  const torch::Tensor w = lin->weight + s * lin->lora_B->weight.mm(lin->lora_A->weight);
  const torch::Tensor norm = w.norm(2, {1}).detach();
  const torch::Tensor g = (lin->lora_magnitude / norm).view({1, -1});
  return F::linear(x, lin->weight, lin->bias) + (g - 1) * F::linear(x, lin->weight) +
         g * F::linear(F::linear(x, lin->lora_A->weight), lin->lora_B->weight) * s;
}

}  // namespace

TEST(Dora, MagnitudeStartsAtTheWeightsRowNormsAndLeavesTheLayerUnchanged) {
  torch::manual_seed(1);
  nn::LoraCompatibleLinear lin(6, 5, true);
  auto gen = at::detail::createCPUGenerator(2);
  lin->add_lora(3, 3.0, gen);
  lin->add_dora();
  ASSERT_TRUE(lin->has_dora());
  EXPECT_TRUE(lin->lora_magnitude.requires_grad());
  EXPECT_TENSOR_NEAR(lin->lora_magnitude, lin->weight.norm(2, {1}), 1e-6);
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({4, 6});
  EXPECT_TENSOR_NEAR(lin(x), F::linear(x, lin->weight, lin->bias), 1e-6);
  lin->remove_lora();
  EXPECT_FALSE(lin->has_dora());
  EXPECT_EQ(lin->parameters().size(), 2u);
}

TEST(Dora, ForwardAndGradientsArePefts) {
  auto lin = dora_layer();
  auto ref = dora_layer();
  const auto x = torch::randn({2, 7, 6});
  const auto y = lin(x);
  const auto expected = peft_dora(ref, x);
  EXPECT_TENSOR_NEAR(y, expected, 1e-5);
  y.pow(2).sum().backward();
  expected.pow(2).sum().backward();
  EXPECT_TENSOR_NEAR(lin->lora_magnitude.grad(), ref->lora_magnitude.grad(), 1e-4);
  EXPECT_TENSOR_NEAR(lin->lora_A->weight.grad(), ref->lora_A->weight.grad(), 1e-4);
  EXPECT_TENSOR_NEAR(lin->lora_B->weight.grad(), ref->lora_B->weight.grad(), 1e-4);
  // The norm is computed without an [out, in] product but equals it.
  const double s = lin->lora_alpha() / static_cast<double>(lin->lora_rank());
  EXPECT_TENSOR_NEAR(lin->dora_weight_norm(),
                     (lin->weight + s * lin->lora_B->weight.mm(lin->lora_A->weight)).norm(2, {1}),
                     1e-5);
}

// generate --lora-scale t moves the weight from W toward the DoRA weight by t, merged or not
// (ComfyUI's strength); t = 0 is the base layer.
TEST(Dora, MergingAtAnyStrengthEqualsTheRunTimeLayer) {
  const auto x = torch::randn({3, 6});
  for (const double t : {1.0, 0.5, 0.0, 1.5}) {
    SCOPED_TRACE(t);
    auto lin = dora_layer();
    torch::NoGradGuard no_grad;
    lin->lora_scale = t;
    const auto runtime = lin(x);
    const auto base = F::linear(x, lin->weight, lin->bias);
    lin->lora_scale = 1.0;
    const auto full = lin(x);
    EXPECT_TENSOR_NEAR(runtime, base + t * (full - base), 1e-5);
    lin->merge_lora(t);
    EXPECT_FALSE(lin->has_lora());
    EXPECT_TENSOR_NEAR(lin(x), runtime, 1e-5);
  }
}

// train.fuse_projections: DoRA's per-column factors applied to the fused GEMM's output give
// what the separate projections give, values and every gradient (magnitudes included), with
// adapters on every projection (one fused pass) and on some (each adapted separately).
TEST(Dora, FusedProjectionsComputeTheSame) {
  for (const std::vector<std::string>& targets :
       {std::vector<std::string>{"to_q", "to_k", "to_v", "to_out.0"}, std::vector<std::string>{"to_k"}}) {
    SCOPED_TRACE(targets.size());
    std::vector<torch::Tensor> outs;
    std::vector<std::map<std::string, torch::Tensor>> grads;
    for (const bool fuse : {false, true}) {
      nn::AttentionConfig c;
      c.query_dim = 16;
      c.heads = 2;
      c.dim_head = 8;
      torch::manual_seed(3);
      nn::Attention attn(c);
      auto gen = at::detail::createCPUGenerator(5);
      const auto net = nn::LoraNetwork::inject(*attn, {4, 8.0, targets, /*dora=*/true}, gen, "test");
      {
        torch::NoGradGuard no_grad;
        for (auto& [name, p] : net.named_parameters()) {
          if (name.find("lora_B") != std::string::npos) p.normal_(0.0, 0.1, gen);
          if (name.find("magnitude") != std::string::npos) p.mul_(1.3);
        }
      }
      if (fuse) {
        attn->fuse_projections();
        ASSERT_TRUE(attn->projections_fused());
      }
      torch::manual_seed(9);
      const auto x = torch::randn({2, 5, 16});
      outs.push_back(attn(x, torch::Tensor()));
      outs.back().pow(2).sum().backward();
      grads.emplace_back();
      for (auto& [name, p] : net.named_parameters()) grads.back()[name] = p.grad().clone();
    }
    EXPECT_TENSOR_NEAR(outs[1], outs[0], 1e-5);
    ASSERT_EQ(grads[0].size(), grads[1].size());
    for (const auto& [name, g] : grads[0]) {
      SCOPED_TRACE(name);
      EXPECT_TENSOR_NEAR(grads[1].at(name), g, 1e-4);
    }
  }
}

TEST(Dora, NetworkNamesTheMagnitudeAsPeftDoes) {
  nn::AttentionConfig c;
  c.query_dim = 8;
  c.heads = 2;
  c.dim_head = 4;
  nn::Attention attn(c);
  auto gen = at::detail::createCPUGenerator(0);
  const auto net = nn::LoraNetwork::inject(*attn, {2, 2.0, {"to_q"}, /*dora=*/true}, gen, "test");
  const auto named = net.named_parameters();
  ASSERT_EQ(named.size(), 3u);
  EXPECT_EQ(named[2].first, "to_q.lora_magnitude_vector");
  EXPECT_EQ(named[2].second.sizes(), (std::vector<std::int64_t>{8}));
  EXPECT_EQ(net.num_parameters(), 2 * 8 + 8 * 2 + 8);
}

// lora.dropout: in training mode the adapter (and DoRA's magnitude term, as peft writes it)
// reads dropout(x), the base W x reads x; in evaluation mode nothing is dropped.
TEST(LoraDropout, TrainingModeDropsTheAdaptersInputOnly) {
  for (const bool dora : {false, true}) {
    SCOPED_TRACE(dora ? "DoRA" : "LoRA");
    auto lin = dora_layer();
    if (!dora) {
      lin->remove_lora();
      auto gen = at::detail::createCPUGenerator(2);
      lin->add_lora(3, 6.0, gen);
      torch::NoGradGuard no_grad;
      lin->lora_B->weight.normal_(0.0, 0.3, gen);
    }
    lin->lora_dropout = 0.5;
    torch::NoGradGuard no_grad;
    const auto x = torch::randn({4, 6});
    lin->eval();
    const auto evaluated = lin(x);
    lin->train();
    torch::manual_seed(11);
    const auto trained = lin(x);
    torch::manual_seed(11);
    const auto xd = F::dropout(x, F::DropoutFuncOptions().p(0.5).training(true));
    const double s = lin->lora_alpha() / static_cast<double>(lin->lora_rank());
    const auto wx = F::linear(x, lin->weight, lin->bias);
    const auto bax = F::linear(F::linear(xd, lin->lora_A->weight), lin->lora_B->weight) * s;
    torch::Tensor expected;
    if (dora) {
      const auto g = (lin->lora_magnitude / lin->dora_weight_norm()).view({1, -1});
      expected = wx + (g - 1) * F::linear(xd, lin->weight) + g * bax;
    } else {
      expected = wx + bax;
    }
    EXPECT_TENSOR_NEAR(trained, expected, 1e-5);
    EXPECT_GT((trained - evaluated).abs().max().item<double>(), 1e-3);
    lin->eval();
    EXPECT_TENSOR_NEAR(lin(x), evaluated, 0.0);
  }
}
