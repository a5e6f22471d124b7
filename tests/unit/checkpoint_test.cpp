#include "sdxl_dreambooth/nn/checkpoint.h"
#include "sdxl_dreambooth/nn/unet_2d_condition.h"
#include "support/small_unet.h"
#include "support/tensors.h"

#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

using namespace sdxl;

namespace {

torch::Tensor loss_of(nn::UNet2DConditionModel& unet) { return test::small_unet_forward(unet).pow(2).mean(); }

// How many checkpointed blocks the autograd graph behind `t` holds.
int checkpoint_nodes(const torch::Tensor& t) {
  std::vector<std::shared_ptr<torch::autograd::Node>> pending{t.grad_fn()};
  std::set<torch::autograd::Node*> seen;
  int found = 0;
  while (!pending.empty()) {
    auto node = pending.back();
    pending.pop_back();
    if (!node || !seen.insert(node.get()).second) continue;
    if (node->name().find("CheckpointFunction") != std::string::npos) ++found;
    for (const auto& edge : node->next_edges()) pending.push_back(edge.function);
  }
  return found;
}

// Gradients of every to_q weight after one backward pass.
std::vector<torch::Tensor> grads(bool checkpointing) {
  auto unet = test::small_unet();
  unet->train();
  unet->set_gradient_checkpointing(checkpointing);
  const auto trainable = test::train_only_to_q(unet);
  loss_of(unet).backward();
  std::vector<torch::Tensor> out;
  for (auto& p : trainable) out.push_back(p.grad().clone());
  return out;
}

}  // namespace

TEST(GradientCheckpointing, SameGradientsReachParametersInsideTheBlocks) {
  const auto plain = grads(false), ckpt = grads(true);
  ASSERT_EQ(plain.size(), ckpt.size());
  ASSERT_FALSE(plain.empty());
  for (std::size_t i = 0; i < plain.size(); ++i) {
    EXPECT_GT(plain[i].abs().sum().item<double>(), 0.0);
    EXPECT_TENSOR_NEAR(ckpt[i], plain[i], 1e-5);
  }
}

// The loaders (and so `train` and `bench`) hand out the UNet in eval mode: the switch must take
// effect there too. It once depended on train(), so train.gradient_checkpointing saved nothing.
TEST(GradientCheckpointing, AppliesToAModelInEvalMode) {
  auto unet = test::small_unet();
  unet->eval();
  test::train_only_to_q(unet);
  EXPECT_EQ(checkpoint_nodes(loss_of(unet)), 0);
  unet->set_gradient_checkpointing(true);
  // 2 down blocks (1 resnet each, 1 transformer in the second), the mid block (2 resnets, 1
  // transformer), 2 up blocks (2 resnets each, 2 transformers in the first): at least one
  // checkpointed call per resnet and transformer.
  EXPECT_GE(checkpoint_nodes(loss_of(unet)), 10);
  torch::NoGradGuard no_grad;
  EXPECT_FALSE(loss_of(unet).requires_grad());
}

TEST(GradientCheckpointing, InputGradientsAndNoGradMode) {
  const auto w = torch::randn({5, 5}, torch::requires_grad());
  const auto x = torch::randn({3, 5}, torch::requires_grad());
  auto fn = [&](const std::vector<torch::Tensor>& in) { return torch::tanh(in[0].matmul(w)).sum(); };
  fn({x}).backward();
  const auto gx = x.grad().clone(), gw = w.grad().clone();
  x.mutable_grad().zero_();
  w.mutable_grad().zero_();
  nn::checkpoint(fn, {x}, {w}).backward();
  EXPECT_TENSOR_NEAR(x.grad(), gx, 1e-6);
  EXPECT_TENSOR_NEAR(w.grad(), gw, 1e-6);
  torch::NoGradGuard no_grad;
  EXPECT_FALSE(nn::checkpoint(fn, {x}, {w}).requires_grad());
}
