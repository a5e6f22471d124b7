// Two DreamBooth LoRA training steps on the tiny UNet against diffusers 0.27.2 + peft
// (vectors/lora_train_*): loss, gradient norm before clipping, every LoRA gradient and
// every LoRA weight after each AdamW step, at the reference README's tolerances.
#include "lora_train_case.h"
#include "parity_support.h"

using namespace sdxl;

namespace {

class LoraTrainParity : public ::testing::TestWithParam<test::LoraTrainCase> {};

TEST_P(LoraTrainParity, TwoAdamWSteps) {
  SDXL_REQUIRE_REFERENCE();
  test::check_lora_train_steps(GetParam(), torch::kCPU);
}

INSTANTIATE_TEST_SUITE_P(Cases, LoraTrainParity, ::testing::ValuesIn(test::lora_train_cases()),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace

namespace {

class ProdigyParity : public ::testing::TestWithParam<test::ProdigyCase> {};

// prodigyopt 1.1.2 as diffusers 0.27.2's script drives it: twelve steps, d after each.
TEST_P(ProdigyParity, TwelveSteps) {
  SDXL_REQUIRE_REFERENCE();
  test::check_prodigy_steps(GetParam(), torch::kCPU);
}

INSTANTIATE_TEST_SUITE_P(Cases, ProdigyParity, ::testing::ValuesIn(test::prodigy_cases()),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace

TEST(TextEncoderLoraParity, TwoAdamWSteps) {
  SDXL_REQUIRE_REFERENCE();
  test::check_text_encoder_lora_steps(torch::kCPU);
}
