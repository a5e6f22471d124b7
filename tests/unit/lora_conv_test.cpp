// LoCon's convolution adapter: y = conv(x, W, b) + (alpha / rank) · conv1x1(conv(x, A), B) with A
// at the layer's stride and padding; merging folds B·A into W and gives the same output; files
// with broken adapters are refused when read.
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/io/safetensors_torch.h"
#include "sdxl_dreambooth/model/lora_import.h"
#include "sdxl_dreambooth/nn/lora_conv.h"
#include "support/process.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

using namespace sdxl;
namespace F = torch::nn::functional;

namespace {

nn::LoraCompatibleConv with_adapter(const nn::ConvShape& s, std::int64_t rank, double alpha) {
  torch::manual_seed(3);
  nn::LoraCompatibleConv conv(s);
  auto gen = at::detail::createCPUGenerator(5);
  conv->add_lora(rank, alpha, gen);
  torch::NoGradGuard no_grad;
  conv->lora_B->weight.normal_(0.0, 0.5);
  return conv;
}

}  // namespace

TEST(LoraConv, AFreshAdapterLeavesTheLayerAlone) {
  torch::manual_seed(1);
  nn::LoraCompatibleConv conv(nn::ConvShape{6, 8, 3, 1, 1});
  const torch::Tensor x = torch::randn({2, 6, 9, 9});
  const torch::Tensor before = conv(x);
  auto gen = at::detail::createCPUGenerator(0);
  conv->add_lora(4, 4.0, gen);
  EXPECT_TRUE(torch::equal(conv(x), before));
  EXPECT_EQ(conv->lora_A->weight.sizes(), (std::vector<std::int64_t>{4, 6, 3, 3}));
  EXPECT_EQ(conv->lora_B->weight.sizes(), (std::vector<std::int64_t>{8, 4, 1, 1}));
}

TEST(LoraConv, OutputFollowsTheFormulaAndMergingKeepsIt) {
  for (const nn::ConvShape s : {nn::ConvShape{6, 8, 3, 2, 1}, nn::ConvShape{6, 8, 1, 1, 0}}) {
    auto conv = with_adapter(s, 3, 1.5);
    const torch::Tensor x = torch::randn({2, 6, 10, 10});
    const auto opts = F::Conv2dFuncOptions().stride(s.stride).padding(s.padding);
    const torch::Tensor expected =
        F::conv2d(x, conv->weight, F::Conv2dFuncOptions(opts).bias(conv->bias)) +
        (1.5 / 3.0) * F::conv2d(F::conv2d(x, conv->lora_A->weight, opts), conv->lora_B->weight);
    torch::Tensor runtime;
    {
      torch::NoGradGuard no_grad;
      runtime = conv(x);
    }
    EXPECT_TRUE(torch::allclose(runtime, expected, 1e-5, 1e-5)) << "kernel " << s.kernel;
    conv->lora_scale = 0.5;
    const torch::Tensor half = conv(x).detach();
    conv->merge_lora(0.5);
    EXPECT_FALSE(conv->has_lora());
    EXPECT_TRUE(torch::allclose(conv(x), half, 1e-5, 1e-5)) << "kernel " << s.kernel;
  }
}

TEST(LoraConv, OnlyTheAdapterTakesAGradient) {
  auto conv = with_adapter(nn::ConvShape{4, 4, 3, 1, 1}, 2, 2.0);
  conv->weight.set_requires_grad(false);
  conv->bias.set_requires_grad(false);
  conv(torch::randn({1, 4, 6, 6})).square().sum().backward();
  EXPECT_GT(conv->lora_A->weight.grad().abs().sum().item<double>(), 0.0);
  EXPECT_GT(conv->lora_B->weight.grad().abs().sum().item<double>(), 0.0);
  EXPECT_FALSE(conv->weight.grad().defined());
}

// A LoRA file's numbers are checked when it is read: one finite alpha per module, finite weights,
// down and up both matrices or both kernels.
TEST(LoraConv, BrokenFilesAreRefusedWithTheirTensorNamed) {
  test::TempDir dir;
  const auto down = torch::randn({2, 4, 3, 3}), up = torch::randn({4, 2, 1, 1});
  const std::string key = "lora_unet_input_blocks_1_0_in_layers_2";
  const auto refused = [&](const std::string& name, std::vector<std::pair<std::string, torch::Tensor>> tensors,
                           const std::string& message) {
    const std::string path = (dir / (name + ".safetensors")).string();
    io::write_safetensors(path, tensors);
    try {
      model::read_lora_file(path);
      ADD_FAILURE() << name << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << e.what();
    }
  };
  refused("alpha-vector",
          {{key + ".lora_down.weight", down}, {key + ".lora_up.weight", up}, {key + ".alpha", torch::ones({2})}},
          "\"" + key + ".alpha\" must be one finite alpha >= 0, got a tensor of shape [2]");
  refused("alpha-nan",
          {{key + ".lora_down.weight", down}, {key + ".lora_up.weight", up},
           {key + ".alpha", torch::tensor(std::nanf(""))}},
          "must be one finite alpha >= 0, got nan");
  auto bad = down.clone();
  bad[0][0][0][0] = std::numeric_limits<float>::infinity();
  refused("inf-down", {{key + ".lora_down.weight", bad}, {key + ".lora_up.weight", up}},
          "\"" + key + ".lora_down.weight\" has non-finite values");
  refused("mixed", {{key + ".lora_down.weight", down}, {key + ".lora_up.weight", up.flatten(1)}},
          "are not both matrices (a linear layer's) or both kernels (a convolution's)");
  refused("rank-zero", {{key + ".lora_down.weight", torch::zeros({0, 4, 3, 3})}, {key + ".lora_up.weight", up}},
          "is empty");
}
