// train.fuse_projections: attention projections that read the same input share one weight
// storage and one GEMM, with their adapters' A sides fused too; outputs and gradients are
// those of the separate projections, parameter names and values unchanged.
#include "sdxl_dreambooth/nn/attention.h"
#include "sdxl_dreambooth/nn/lora_network.h"
#include "sdxl_dreambooth/nn/transformer_2d.h"
#include "sdxl_dreambooth/nn/unet_2d_condition.h"
#include "support/small_unet.h"
#include "support/tensors.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

using namespace sdxl;

namespace {

nn::Attention attention(std::int64_t cross_attention_dim) {
  nn::AttentionConfig c;
  c.query_dim = 16;
  c.cross_attention_dim = cross_attention_dim;
  c.heads = 2;
  c.dim_head = 8;
  torch::manual_seed(3);
  return nn::Attention(c);
}

// Adapters with non-zero B (they start at zero) so their term shows in every output.
nn::LoraNetwork add_adapters(torch::nn::Module& root, const std::vector<std::string>& targets) {
  auto gen = at::detail::createCPUGenerator(5);
  auto net = nn::LoraNetwork::inject(root, {4, 8.0, targets}, gen, "test");
  torch::NoGradGuard no_grad;
  for (auto& [name, p] : net.named_parameters()) {
    if (name.find("lora_B") != std::string::npos) p.normal_(0.0, 0.1, gen);
  }
  return net;
}

struct Outcome {
  torch::Tensor out;
  std::map<std::string, torch::Tensor> grads;  // of the adapters
};

Outcome forward_backward(nn::Attention& attn, const nn::LoraNetwork& net, const torch::Tensor& context) {
  torch::manual_seed(9);
  const auto x = torch::randn({2, 5, 16});
  Outcome r;
  r.out = attn(x, context);
  r.out.pow(2).sum().backward();
  for (auto& [name, p] : net.named_parameters()) {
    r.grads[name] = p.grad().clone();
    p.mutable_grad().reset();
  }
  return r;
}

void expect_same(const Outcome& fused, const Outcome& separate) {
  EXPECT_TENSOR_NEAR(fused.out, separate.out, 1e-5);
  ASSERT_EQ(fused.grads.size(), separate.grads.size());
  for (const auto& [name, g] : separate.grads) {
    SCOPED_TRACE(name);
    EXPECT_TENSOR_NEAR(fused.grads.at(name), g, 1e-5);
  }
}

}  // namespace

TEST(FusedProjections, SelfAttentionSharesOneStorageAndComputesTheSame) {
  for (const std::vector<std::string>& targets :
       {std::vector<std::string>{"to_q", "to_k", "to_v", "to_out.0"}, std::vector<std::string>{"to_q"}}) {
    SCOPED_TRACE(targets.size() == 1 ? "adapter on to_q only" : "adapters on every projection");
    auto attn = attention(0);
    const auto net = add_adapters(*attn, targets);
    std::map<std::string, torch::Tensor> before;
    for (const auto& p : attn->named_parameters()) before[p.key()] = p.value().detach().clone();
    const Outcome separate = forward_backward(attn, net, {});
    EXPECT_FALSE(attn->projections_fused());

    attn->fuse_projections();
    ASSERT_TRUE(attn->projections_fused());
    EXPECT_TRUE(attn->to_k->weight.is_alias_of(attn->to_q->weight));
    EXPECT_TRUE(attn->to_v->weight.is_alias_of(attn->to_q->weight));
    const auto after = attn->named_parameters();
    ASSERT_EQ(after.size(), before.size());
    for (const auto& p : after) EXPECT_TRUE(torch::equal(p.value(), before.at(p.key()))) << p.key();
    expect_same(forward_backward(attn, net, {}), separate);
  }
}

// Adapters of different scales (generate --lora-scale applies one to all; a per-layer scale
// still has to come out right): their B sides are scaled before they are joined.
TEST(FusedProjections, AdaptersOfDifferentScalesComputeTheSame) {
  auto attn = attention(0);
  const auto net = add_adapters(*attn, {"to_q", "to_k", "to_v"});
  attn->to_k->lora_scale = 0.5;
  attn->to_v->lora_scale = 2.0;
  const Outcome separate = forward_backward(attn, net, {});
  attn->fuse_projections();
  ASSERT_TRUE(attn->projections_fused());
  expect_same(forward_backward(attn, net, {}), separate);
}

TEST(FusedProjections, CrossAttentionFusesKeyAndValue) {
  auto attn = attention(12);
  const auto net = add_adapters(*attn, {"to_q", "to_k", "to_v", "to_out.0"});
  const auto context = torch::randn({2, 7, 12});
  const Outcome separate = forward_backward(attn, net, context);
  attn->fuse_projections();
  ASSERT_TRUE(attn->projections_fused());
  EXPECT_TRUE(attn->to_v->weight.is_alias_of(attn->to_k->weight));
  EXPECT_FALSE(attn->to_q->weight.is_alias_of(attn->to_k->weight)) << "to_q reads the other input";
  expect_same(forward_backward(attn, net, context), separate);
}

// A cast or move gives every weight its own storage: forward notices and computes the
// projections one by one, still right.
TEST(FusedProjections, ACastAfterFusingFallsBackToSeparateProjections) {
  auto attn = attention(0);
  const auto net = add_adapters(*attn, {"to_q", "to_k", "to_v"});
  attn->fuse_projections();
  attn->to(torch::kDouble);
  EXPECT_FALSE(attn->projections_fused());
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({2, 5, 16}, torch::kDouble);
  const auto q = attn->to_q(x);
  EXPECT_EQ(attn(x).scalar_type(), torch::kDouble);
  attn->fuse_projections();
  EXPECT_TRUE(attn->projections_fused());
  EXPECT_TENSOR_NEAR(attn->to_q(x), q, 0.0);
}

// Projections with a bias (the VAE's attention) are left alone.
TEST(FusedProjections, ProjectionsWithABiasStaySeparate) {
  nn::AttentionConfig c;
  c.query_dim = 16;
  c.bias = true;
  nn::Attention attn(c);
  attn->fuse_projections();
  EXPECT_FALSE(attn->projections_fused());
}

TEST(FusedProjections, TheUNetFusesEveryAttentionAndPredictsTheSame) {
  auto separate = test::small_unet(), fused = test::small_unet();
  fused->fuse_projections();
  std::size_t attentions = 0;
  for (const auto& m : fused->modules(false)) {
    if (const auto* a = m->as<nn::AttentionImpl>()) {
      EXPECT_TRUE(a->projections_fused());
      ++attentions;
    }
  }
  EXPECT_GE(attentions, 2u) << "attn1 and attn2 of the transformer blocks";
  torch::NoGradGuard no_grad;
  EXPECT_TENSOR_NEAR(test::small_unet_forward(fused), test::small_unet_forward(separate), 1e-5);
}
