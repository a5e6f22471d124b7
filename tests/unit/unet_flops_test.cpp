// The analytic UNet FLOP count MFU is measured against.
#include "sdxl_dreambooth/model/unet_flops.h"
#include "support/reference.h"

#include <gtest/gtest.h>

namespace sdxl {
namespace {

TEST(UNetFlops, SdxlBaseAt1024MatchesThePublishedFigures) {
  SDXL_REQUIRE_REFERENCE();
  const auto cfg = model::UNetConfig::load(test::reference_dir() / "sdxl-base-1.0-manifest" / "unet.config.json");
  const auto f = model::unet_flops(cfg, 1024, 1024);
  EXPECT_NEAR(f.forward / 1e12, 6.761, 0.001);             // 6.76 TFLOP per UNet forward
  EXPECT_NEAR(f.lora_training_step / 1e12, 14.078, 0.001);  // 14.07 TFLOP per LoRA step
  // Attention is quadratic in the pixels, everything else linear: 2x the side is more than 4x.
  const auto half = model::unet_flops(cfg, 512, 512);
  EXPECT_GT(f.forward, 4 * half.forward);
  EXPECT_LT(f.forward, 5 * half.forward);
  EXPECT_GT(f.lora_training_step, 2 * f.forward - 0.05 * f.forward);
}

TEST(UNetFlops, TinyPipelineCountsEveryBlock) {
  SDXL_REQUIRE_REFERENCE();
  const auto cfg = model::UNetConfig::load(test::reference_dir() / "tiny-sdxl" / "unet" / "config.json");
  const auto f = model::unet_flops(cfg, 64, 64);
  EXPECT_GT(f.forward, 0);
  EXPECT_GT(f.lora_training_step, f.forward);
  EXPECT_LT(f.lora_training_step, 3 * f.forward);
}

}  // namespace
}  // namespace sdxl
