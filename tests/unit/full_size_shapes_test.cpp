// The networks built from SDXL base 1.0's real configs have exactly the parameter names
// and shapes of the real checkpoints (sdxl-base-1.0-manifest/*.tsv), so real weights load.
#include "sdxl_dreambooth/nn/autoencoder_kl.h"
#include "sdxl_dreambooth/nn/clip_text_model.h"
#include "sdxl_dreambooth/nn/unet_2d_condition.h"
#include "support/reference.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>

using namespace sdxl;

namespace {

std::map<std::string, std::string> manifest(const std::string& name) {
  std::ifstream in(test::reference_dir() / "sdxl-base-1.0-manifest" / (name + ".tsv"));
  std::map<std::string, std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto tab = line.find('\t');
    out[line.substr(0, tab)] = line.substr(tab + 1);
  }
  return out;
}

std::map<std::string, std::string> shapes(const torch::nn::Module& m) {
  std::map<std::string, std::string> out;
  for (const auto& p : m.named_parameters()) {
    std::string s;
    for (auto d : p.value().sizes()) s += (s.empty() ? "" : "x") + std::to_string(d);
    out[p.key()] = s;
  }
  return out;
}

void expect_same(const std::map<std::string, std::string>& built, const std::map<std::string, std::string>& want) {
  ASSERT_FALSE(want.empty()) << "manifest not found";
  for (const auto& [k, v] : want) {
    auto it = built.find(k);
    if (it == built.end()) {
      ADD_FAILURE() << "missing " << k;
    } else {
      EXPECT_EQ(it->second, v) << k;
    }
  }
  for (const auto& [k, v] : built) EXPECT_TRUE(want.count(k)) << "unexpected " << k;
}

// Full-size modules are built in bfloat16 to halve the memory (5 GB for the UNet).
struct HalfDefault {
  HalfDefault() : saved(torch::get_default_dtype()) { torch::set_default_dtype(caffe2::TypeMeta::Make<at::BFloat16>()); }
  ~HalfDefault() { torch::set_default_dtype(saved); }
  caffe2::TypeMeta saved;
};

}  // namespace

TEST(FullSizeShapes, UNet) {
  SDXL_REQUIRE_REFERENCE();
  HalfDefault half;
  const auto cfg = model::UNetConfig::load(test::reference_dir() / "sdxl-base-1.0-manifest" / "unet.config.json");
  nn::UNet2DConditionModel unet(cfg);
  expect_same(shapes(*unet), manifest("unet"));
}

TEST(FullSizeShapes, Vae) {
  SDXL_REQUIRE_REFERENCE();
  HalfDefault half;
  nn::AutoencoderKL vae(model::VaeConfig::load(test::reference_dir() / "sdxl-base-1.0-manifest" / "vae.config.json"));
  expect_same(shapes(*vae), manifest("vae"));
}

TEST(FullSizeShapes, TextEncoders) {
  SDXL_REQUIRE_REFERENCE();
  HalfDefault half;
  // SDXL's CLIP configs: ViT-L/14's text tower and OpenCLIP ViT-bigG/14's with projection.
  const auto te1 = model::ClipTextConfig::from_json(model::JsonConfig(nlohmann::json::parse(R"({
    "architectures": ["CLIPTextModel"], "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
    "num_hidden_layers": 12, "hidden_act": "quick_gelu", "projection_dim": 768})"), "te1"));
  const auto te2 = model::ClipTextConfig::from_json(model::JsonConfig(nlohmann::json::parse(R"({
    "architectures": ["CLIPTextModelWithProjection"], "hidden_size": 1280, "intermediate_size": 5120,
    "num_attention_heads": 20, "num_hidden_layers": 32, "hidden_act": "gelu", "projection_dim": 1280})"), "te2"));
  auto want1 = manifest("text_encoder");
  want1.erase("text_model.embeddings.position_ids");  // a buffer, tolerated by the loader
  expect_same(shapes(*nn::ClipTextModel(te1)), want1);
  auto want2 = manifest("text_encoder_2");
  want2.erase("text_model.embeddings.position_ids");
  expect_same(shapes(*nn::ClipTextModel(te2)), want2);
}
