// The networks against diffusers 0.27.2 / transformers, loading tiny-sdxl through the real
// loader. Tolerances are the reference README's.
#include "parity_support.h"
#include "sdxl_dreambooth/model/component_loader.h"
#include "sdxl_dreambooth/nn/prompt_encoding.h"

#include <fstream>
#include <string>

using namespace sdxl;

namespace {

constexpr double kTol = 1e-4;

model::ComponentLoadOptions fp32() { return {}; }

}  // namespace

TEST(NetworkParity, TextEncoder) {
  SDXL_REQUIRE_REFERENCE();
  torch::NoGradGuard no_grad;
  auto te = model::load_text_encoder(test::tiny_sdxl() / "text_encoder", fp32());
  const auto ref = test::vectors("text_encoder");
  const auto out = te(ref.tensor("input_ids"));
  EXPECT_TENSOR_NEAR(out.last_hidden_state, ref.tensor("last_hidden_state"), kTol);
  EXPECT_TENSOR_NEAR(out.penultimate(), ref.tensor("penultimate_hidden_state"), kTol);
  EXPECT_TENSOR_NEAR(out.pooled_output, ref.tensor("pooled_output"), kTol);
}

TEST(NetworkParity, TextEncoder2WithProjection) {
  SDXL_REQUIRE_REFERENCE();
  torch::NoGradGuard no_grad;
  auto te = model::load_text_encoder(test::tiny_sdxl() / "text_encoder_2", fp32());
  const auto ref = test::vectors("text_encoder_2");
  const auto out = te(ref.tensor("input_ids"));
  EXPECT_TENSOR_NEAR(out.last_hidden_state, ref.tensor("last_hidden_state"), kTol);
  EXPECT_TENSOR_NEAR(out.penultimate(), ref.tensor("penultimate_hidden_state"), kTol);
  EXPECT_TENSOR_NEAR(out.pooled_output, ref.tensor("pooled_output"), kTol);
  EXPECT_TENSOR_NEAR(out.text_embeds, ref.tensor("text_embeds"), kTol);
}

TEST(NetworkParity, EncodePrompt) {
  SDXL_REQUIRE_REFERENCE();
  torch::NoGradGuard no_grad;
  auto te1 = model::load_text_encoder(test::tiny_sdxl() / "text_encoder", fp32());
  auto te2 = model::load_text_encoder(test::tiny_sdxl() / "text_encoder_2", fp32());
  const auto ids1 = test::vectors("text_encoder").tensor("input_ids");
  const auto ids2 = test::vectors("text_encoder_2").tensor("input_ids");
  const auto ref = test::vectors("encode_prompt");
  const auto e = nn::encode_prompt(te1, te2, ids1, ids2);
  EXPECT_TENSOR_NEAR(e.prompt_embeds, ref.tensor("prompt_embeds"), kTol);
  EXPECT_TENSOR_NEAR(e.pooled_prompt_embeds, ref.tensor("pooled_prompt_embeds"), kTol);
}

class UNetParity : public ::testing::TestWithParam<const char*> {};

TEST_P(UNetParity, Forward) {
  SDXL_REQUIRE_REFERENCE();
  torch::NoGradGuard no_grad;
  auto unet = model::load_unet(test::tiny_sdxl() / "unet", fp32());
  const auto ref = test::vectors(GetParam());
  const auto out = unet(ref.tensor("sample"), ref.tensor("timestep"), ref.tensor("encoder_hidden_states"),
                        ref.tensor("text_embeds"), ref.tensor("time_ids"));
  EXPECT_TENSOR_NEAR(out, ref.tensor("out"), kTol);
}

// unet_odd has 12x20 latents: the upsample-size path.
INSTANTIATE_TEST_SUITE_P(Reference, UNetParity, ::testing::Values("unet_square", "unet_odd"));

TEST(NetworkParity, UNetFp16VariantLoadsTheSameWeights) {
  SDXL_REQUIRE_REFERENCE();
  torch::NoGradGuard no_grad;
  model::ComponentLoadOptions fp16;
  fp16.variant = "fp16";
  model::ComponentInfo info;
  auto unet = model::load_unet(test::tiny_sdxl() / "unet", fp16, &info);
  EXPECT_NE(info.weights.find("diffusion_pytorch_model.fp16.safetensors"), std::string::npos);
  const auto ref = test::vectors("unet_square");
  const auto out = unet(ref.tensor("sample"), ref.tensor("timestep"), ref.tensor("encoder_hidden_states"),
                        ref.tensor("text_embeds"), ref.tensor("time_ids"));
  // fp16-rounded weights evaluated in fp32: the rounding of the weights, not the math, differs.
  EXPECT_TENSOR_NEAR(out, ref.tensor("out"), 2e-2);
}

TEST(NetworkParity, Vae) {
  SDXL_REQUIRE_REFERENCE();
  torch::NoGradGuard no_grad;
  auto vae = model::load_vae(test::tiny_sdxl() / "vae", fp32());
  const auto ref = test::vectors("vae");
  const auto posterior = vae->encode(ref.tensor("image"));
  EXPECT_TENSOR_NEAR(posterior.mean, ref.tensor("mean"), kTol);
  EXPECT_TENSOR_NEAR(posterior.logvar, ref.tensor("logvar"), kTol);
  EXPECT_TENSOR_NEAR(posterior.std, ref.tensor("std"), kTol);
  EXPECT_TENSOR_NEAR(posterior.sample(ref.tensor("noise")), ref.tensor("sample"), kTol);
  EXPECT_TENSOR_NEAR(vae->decode(ref.tensor("mean")), ref.tensor("decoded_mean"), kTol);
}

TEST(NetworkParity, AttentionPathsAgree) {
  torch::manual_seed(0);
  const auto q = torch::randn({2, 3, 300, 16}), k = torch::randn({2, 3, 77, 16}), v = torch::randn({2, 3, 77, 16});
  nn::AttentionOptions portable, chunked, automatic;
  portable.backend = nn::AttentionBackend::kPortable;
  chunked.backend = nn::AttentionBackend::kChunked;
  chunked.query_chunk = 64;
  const auto a = nn::scaled_dot_product_attention(q, k, v, portable);
  EXPECT_TENSOR_NEAR(nn::scaled_dot_product_attention(q, k, v, chunked), a, 1e-5);
  EXPECT_TENSOR_NEAR(nn::scaled_dot_product_attention(q, k, v, automatic), a, 1e-5);
  // Against the definition.
  const auto def = torch::softmax(torch::matmul(q, k.transpose(-1, -2)) / 4.0, -1).matmul(v);
  EXPECT_TENSOR_NEAR(a, def, 1e-5);
}

namespace {

// oneDNN runs bfloat16 convolutions and matmuls with float32 accumulation only on AVX-512
// CPUs; elsewhere LibTorch 1.13 falls back to ATen kernels that round intermediate sums to
// bfloat16.
bool cpu_has_avx512() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) == 0) return line.find(" avx512bw") != std::string::npos;
  }
  return false;
}

}  // namespace

// Frozen weights held in bfloat16 on CPU (what mixed precision does on a cluster): the same
// network, within bfloat16's precision. Rounding the weights alone to bf16 (8 significant
// bits) moves the output by 0.6 % of max |out| (bound 1 %). Computing in bf16 adds rounding at
// every operation: over the UNet's ~60 sequential layers a few percent, 5 % with oneDNN's
// float32 accumulation (AVX-512); LibTorch's fallback kernels on AVX2-only CPUs were measured at
// 6.5 % on the 2-core CI VM (AMD EPYC, AVX2), bound 8 % there.
TEST(NetworkParity, UNetInBfloat16OnCpu) {
  SDXL_REQUIRE_REFERENCE();
  torch::NoGradGuard no_grad;
  const auto ref = test::vectors("unet_odd");
  const auto want = ref.tensor("out");
  const double scale = want.abs().max().item<double>();
  auto inputs = [&](nn::UNet2DConditionModel& unet, torch::Dtype dtype) {
    auto as = [&](const char* name) { return ref.tensor(name).to(dtype); };
    return unet(as("sample"), ref.tensor("timestep"), as("encoder_hidden_states"), as("text_embeds"), as("time_ids"));
  };
  auto rounded = model::load_unet(test::tiny_sdxl() / "unet", {});
  for (auto& p : rounded->parameters()) p.copy_(p.to(torch::kBFloat16).to(torch::kFloat));
  EXPECT_TENSOR_NEAR(inputs(rounded, torch::kFloat), want, 0.01 * scale);

  model::ComponentLoadOptions bf16;
  bf16.dtype = torch::kBFloat16;
  auto unet = model::load_unet(test::tiny_sdxl() / "unet", bf16);
  EXPECT_EQ(unet->conv_in->weight.scalar_type(), torch::kBFloat16);
  const auto out = inputs(unet, torch::kBFloat16);
  EXPECT_EQ(out.scalar_type(), torch::kBFloat16);
  EXPECT_TENSOR_NEAR(out.to(torch::kFloat), want, (cpu_has_avx512() ? 0.05 : 0.08) * scale);
}

// force_upcast: a float16 VAE decodes in float32 (on CPU, LibTorch 1.13 has no float16
// convolution at all, so without the upcast this would throw).
TEST(NetworkParity, Fp16VaeDecodesInFloat32) {
  SDXL_REQUIRE_REFERENCE();
  torch::NoGradGuard no_grad;
  model::ComponentLoadOptions fp16;
  fp16.dtype = torch::kHalf;
  auto vae = model::load_vae(test::tiny_sdxl() / "vae", fp16);
  ASSERT_TRUE(vae->needs_upcast());
  const auto ref = test::vectors("vae");
  const auto image = vae->decode(ref.tensor("mean").to(torch::kHalf));
  EXPECT_EQ(image.scalar_type(), torch::kFloat);
  EXPECT_EQ(vae->decoder->conv_in->weight.scalar_type(), torch::kHalf);  // back to fp16 afterwards
  // Only the rounding of weights and latents to fp16 (relative 2^-11 each) differs from the
  // fp32 reference; through the decoder's ~30 layers that stays within 2 % of the image's scale.
  const auto want = ref.tensor("decoded_mean");
  EXPECT_TENSOR_NEAR(image, want, 0.02 * want.abs().max().item<double>());
}
