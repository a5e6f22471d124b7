// train.channels_last: the UNet in NHWC layout computes the same values and gradients, and
// the layout survives the blocks that reshape (transformers, upsampling).
#include "sdxl_dreambooth/nn/resnet.h"
#include "sdxl_dreambooth/nn/transformer_2d.h"
#include "sdxl_dreambooth/nn/unet_2d_condition.h"
#include "support/small_unet.h"
#include "support/tensors.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using namespace sdxl;

namespace {

constexpr auto kNhwc = at::MemoryFormat::ChannelsLast;

struct Result {
  torch::Tensor out;
  std::vector<torch::Tensor> grads;  // of every to_q weight (the LoRA stand-in)
};

Result run(bool channels_last) {
  auto unet = test::small_unet();
  unet->set_channels_last(channels_last);
  const auto trainable = test::train_only_to_q(unet);
  Result r;
  r.out = test::small_unet_forward(unet);
  r.out.pow(2).mean().backward();
  for (const auto& p : trainable) r.grads.push_back(p.grad().clone());
  return r;
}

}  // namespace

TEST(ChannelsLast, SameOutputAndGradients) {
  const Result nchw = run(false), nhwc = run(true);
  EXPECT_TRUE(nhwc.out.is_contiguous(kNhwc));
  EXPECT_TENSOR_NEAR(nhwc.out, nchw.out, 1e-5);
  ASSERT_EQ(nhwc.grads.size(), nchw.grads.size());
  ASSERT_FALSE(nchw.grads.empty());
  for (std::size_t i = 0; i < nchw.grads.size(); ++i) EXPECT_TENSOR_NEAR(nhwc.grads[i], nchw.grads[i], 1e-5);
}

TEST(ChannelsLast, ConvolutionWeightsAndBlockOutputsStayNhwc) {
  auto unet = test::small_unet();
  unet->set_channels_last(true);
  EXPECT_TRUE(unet->channels_last());
  for (const auto& p : unet->named_parameters()) {
    if (p.value().dim() == 4) EXPECT_TRUE(p.value().is_contiguous(kNhwc)) << p.key();
  }
  torch::NoGradGuard no_grad;
  // The transformer flattens H×W into tokens and back; the upsampler interpolates.
  auto transformer = unet->down_blocks[1]->as<nn::UNetDownBlock>()->attentions[0]->as<nn::Transformer2DModel>();
  const auto x = torch::randn({2, 32, 4, 4}).contiguous(kNhwc);
  EXPECT_TRUE(transformer->forward(x, torch::randn({2, 7, 24})).is_contiguous(kNhwc));
  auto upsampler = unet->up_blocks[0]->as<nn::UNetUpBlock>()->upsamplers[0]->as<nn::Upsample2D>();
  EXPECT_TRUE(upsampler->forward(x).is_contiguous(kNhwc));
  // And back: plain layout again.
  unet->set_channels_last(false);
  for (const auto& p : unet->parameters()) EXPECT_TRUE(p.is_contiguous());
}
