// nn::AdapterCast: under bf16 every adapter is cast once per forward pass instead of where it
// is used, with the same outputs and float32 gradients as the per-use casts, bit for bit.
#include "sdxl_dreambooth/nn/adapter_cast.h"
#include "sdxl_dreambooth/nn/lora_network.h"
#include "sdxl_dreambooth/nn/unet_2d_condition.h"
#include "sdxl_dreambooth/train/adamw.h"
#include "support/adapter_cast_check.h"
#include "support/small_unet.h"

#include <gtest/gtest.h>

using namespace sdxl;

TEST(AdapterCast, Bf16AdaptersCastOncePerPassGiveTheSameOutputAndGradientsBitForBit) {
  for (const bool fuse : {false, true}) test::expect_adapter_cast_matches_per_use_casts(torch::kCPU, fuse);
}

TEST(AdapterCast, DoesNothingWithoutACastToSaveOrASharedBuffer) {
  auto gen = at::detail::createCPUGenerator(5);
  const nn::LoraSpec spec{4, 8.0, {"to_q", "to_k", "to_v", "to_out.0"}};
  {
    SCOPED_TRACE("float32: the adapters are in the activations' dtype already");
    auto unet = test::small_unet();
    const auto lora = nn::LoraNetwork::inject(*unet, spec, gen, "UNet");
    const train::AdamW adamw(lora.parameters(), train::AdamWOptions{});  // side by side, yet nothing to cast
    const nn::AdapterCast cast(lora, torch::kFloat);
    EXPECT_FALSE(cast.active());
    EXPECT_TRUE(nn::cast_together(lora.parameters(), torch::kFloat).empty());
    for (const auto& m : lora.modules()) EXPECT_FALSE(m->cast_A.defined());
  }
  {
    SCOPED_TRACE("bf16, adapters each in their own storage (no AdamW buffer)");
    auto unet = test::small_unet();
    unet->to(torch::kBFloat16);
    const auto lora = nn::LoraNetwork::inject(*unet, spec, gen, "UNet");
    const nn::AdapterCast cast(lora, torch::kBFloat16);
    EXPECT_FALSE(cast.active());
    EXPECT_TRUE(nn::cast_together(lora.parameters(), torch::kBFloat16).empty());
  }
}
