// lora.preset / lora.targets beyond the attention projections (kohya's networks.lora: proj_in,
// proj_out, ff.net.0.proj, ff.net.2) and lora.blocks: which layers get adapters, that each
// computes base + scaling · B(A x) (the GEGLU projection's two halves included), and that the
// block filter keeps the rest frozen.
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/nn/lora_network.h"
#include "sdxl_dreambooth/nn/transformer_2d.h"
#include "support/small_unet.h"
#include "support/tensors.h"

#include <gtest/gtest.h>

using namespace sdxl;

namespace {

const std::vector<std::string> kKohyaTargets{"to_q",     "to_k",     "to_v",          "to_out.0",
                                             "proj_in",  "proj_out", "ff.net.0.proj", "ff.net.2"};

std::size_t count_ending(const std::vector<std::string>& paths, const std::string& suffix) {
  return static_cast<std::size_t>(std::count_if(paths.begin(), paths.end(), [&](const std::string& p) {
    return p.size() > suffix.size() && p.compare(p.size() - suffix.size(), suffix.size(), suffix) == 0;
  }));
}

}  // namespace

TEST(LoraTargets, KohyaPresetWrapsEveryLinearOfTheTransformerBlocks) {
  auto unet = test::small_unet();
  auto gen = at::detail::createCPUGenerator(0);
  const auto net = nn::LoraNetwork::inject(*unet, {4, 4.0, kKohyaTargets}, gen, "UNet");
  const auto& paths = net.module_paths();
  const std::size_t attention = count_ending(paths, ".to_q");
  ASSERT_GT(attention, 0u);
  // Per transformer block: 2 × (q, k, v, out) and the two feed-forward layers; per
  // Transformer2DModel: proj_in and proj_out.
  EXPECT_EQ(count_ending(paths, ".ff.net.0.proj"), attention / 2);
  EXPECT_EQ(count_ending(paths, ".ff.net.2"), attention / 2);
  EXPECT_EQ(count_ending(paths, ".proj_in"), count_ending(paths, ".proj_out"));
  EXPECT_GT(count_ending(paths, ".proj_in"), 0u);
  EXPECT_EQ(paths.size(), 4 * attention + attention + 2 * count_ending(paths, ".proj_in"));
}

// B non-zero: the feed-forward with adapters on both its layers equals the formula written out,
// GEGLU's halves taken from the adapted projection.
TEST(LoraTargets, FeedForwardAdaptersFollowTheFormula) {
  torch::manual_seed(5);
  nn::FeedForward ff(8, 2);
  auto gen = at::detail::createCPUGenerator(1);
  auto net = nn::LoraNetwork::inject(*ff, {2, 4.0, {"net.0.proj", "net.2"}}, gen, "ff");
  ASSERT_EQ(net.size(), 2u);
  {
    torch::NoGradGuard no_grad;
    for (auto& [name, p] : net.named_parameters()) {
      if (name.find("lora_B") != std::string::npos) p.normal_(0.0, 0.5, gen);
    }
  }
  namespace F = torch::nn::functional;
  auto adapted = [](const nn::LoraCompatibleLinearImpl& l, const torch::Tensor& x) {
    return F::linear(x, l.weight, l.bias) + 2.0 * F::linear(F::linear(x, l.lora_A->weight), l.lora_B->weight);
  };
  const auto x = torch::randn({3, 5, 8});
  const auto proj = ff->net[0]->as<nn::GEGLU>()->proj;
  const auto out = ff->net[2]->as<nn::LoraCompatibleLinear>();
  const auto h = adapted(*proj, x).chunk(2, -1);
  const auto expected = adapted(*out, h[0] * F::gelu(h[1]));
  const auto y = ff(x);
  EXPECT_TENSOR_NEAR(y, expected, 1e-5);
  y.pow(2).sum().backward();
  for (const auto& [name, p] : net.named_parameters()) EXPECT_TRUE(p.grad().defined()) << name;
}

// lora.blocks: only the named blocks get adapters; a block that holds none is an error.
TEST(LoraTargets, BlocksRestrictTheAdapters) {
  auto unet = test::small_unet();
  auto gen = at::detail::createCPUGenerator(0);
  const auto all = nn::LoraNetwork::inject(*unet, {4, 4.0, kKohyaTargets}, gen, "UNet");
  // The first up block's first attention: "up_blocks.I.attentions.J", the first four parts of a path.
  std::string block;
  for (const auto& p : all.module_paths()) {
    if (p.rfind("up_blocks.", 0) != 0) continue;
    std::size_t end = 0;
    for (int dots = 0; dots < 4 && end != std::string::npos; ++dots) end = p.find('.', end + (dots ? 1 : 0));
    block = p.substr(0, end);
    break;
  }
  ASSERT_FALSE(block.empty());
  auto unet2 = test::small_unet();
  nn::LoraSpec spec{4, 4.0, kKohyaTargets};
  spec.blocks = {block};
  const auto some = nn::LoraNetwork::inject(*unet2, spec, gen, "UNet");
  ASSERT_GT(some.size(), 0u);
  EXPECT_LT(some.size(), all.size());
  for (const auto& p : some.module_paths()) EXPECT_EQ(p.rfind(block + ".", 0), 0u) << p;
  spec.blocks = {"up_blocks.9.attentions.0"};
  auto unet3 = test::small_unet();
  EXPECT_THROW(nn::LoraNetwork::inject(*unet3, spec, gen, "UNet"), UsageError);
}

// A target no layer has names the key it came from and the layers that model does have.
TEST(LoraTargets, AnUnknownTargetNamesItsKeyAndTheModelsLayers) {
  at::Generator gen = at::detail::createCPUGenerator(0);
  const auto message = [&](const std::string& what) {
    auto unet = test::small_unet();
    try {
      nn::LoraNetwork::inject(*unet, nn::LoraSpec{4, 4.0, {"nope"}}, gen, what);
    } catch (const UsageError& e) {
      return std::string(e.what()) + " | " + e.hint();
    }
    return std::string();
  };
  const std::string unet = message("UNet"), text = message("text_encoder");
  EXPECT_NE(unet.find("lora.targets: \"nope\" matches no layer of the UNet | the UNet's layers are named to_q"),
            std::string::npos)
      << unet;
  EXPECT_NE(text.find("lora.text_encoder_targets: \"nope\" matches no layer of the text_encoder | the text "
                      "encoders' layers are named q_proj"),
            std::string::npos)
      << text;
}
