// Upsample2D: nearest ×2 then a 3×3 convolution. In bfloat16 it runs without the float32
// round trip where LibTorch has the kernel (torch_compat.h); nearest copies values, so the
// convolution must see exactly the repeated input either way.
#include "sdxl_dreambooth/nn/resnet.h"
#include "sdxl_dreambooth/torch_compat.h"

#include <gtest/gtest.h>

using namespace sdxl;

TEST(Upsample2D, Bfloat16IsNearestRepeatThenConvolutionBitForBit) {
  torch::manual_seed(0);
  nn::Upsample2D up(8);
  up->to(torch::kBFloat16);
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({2, 8, 5, 3}).to(torch::kBFloat16);
  const auto repeated = x.repeat_interleave(2, 2).repeat_interleave(2, 3);
  const auto out = up(x);
  EXPECT_EQ(out.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(out, up->conv(repeated))) << "LibTorch " << compat::torch_version();
  // An explicit size (the UNet's odd latents) is nearest sampling too.
  const auto sized = up(x, std::vector<std::int64_t>{10, 6});
  EXPECT_TRUE(torch::equal(sized, up->conv(repeated)));
}
