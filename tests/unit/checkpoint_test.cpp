#include "sdxl_dreambooth/nn/checkpoint.h"
#include "sdxl_dreambooth/nn/unet_2d_condition.h"
#include "support/tensors.h"

#include <gtest/gtest.h>

using namespace sdxl;

namespace {

// A small SDXL-shaped UNet with random weights (no reference data needed).
nn::UNet2DConditionModel small_unet() {
  const auto json = nlohmann::json::parse(R"({
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"], "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [16, 32], "layers_per_block": 1, "transformer_layers_per_block": [1, 2],
    "attention_head_dim": [2, 4], "cross_attention_dim": 24, "norm_num_groups": 8, "use_linear_projection": true,
    "addition_embed_type": "text_time", "addition_time_embed_dim": 4, "projection_class_embeddings_input_dim": 32})");
  torch::manual_seed(0);
  return nn::UNet2DConditionModel(model::UNetConfig::from_json(model::JsonConfig(json, "test")));
}

// Gradients of every to_q weight (the LoRA stand-in) after one backward pass.
std::vector<torch::Tensor> grads(bool checkpointing) {
  auto unet = small_unet();
  unet->train();
  unet->set_gradient_checkpointing(checkpointing);
  std::vector<torch::Tensor> trainable;
  for (auto& p : unet->named_parameters()) {
    const bool train = p.key().find("to_q.weight") != std::string::npos;
    p.value().set_requires_grad(train);
    if (train) trainable.push_back(p.value());
  }
  torch::manual_seed(1);
  const auto sample = torch::randn({2, 4, 8, 8}), context = torch::randn({2, 7, 24});
  const auto text = torch::randn({2, 8}), time_ids = torch::rand({2, 6}) * 64;
  unet(sample, torch::tensor({10, 500}), context, text, time_ids).pow(2).mean().backward();
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
