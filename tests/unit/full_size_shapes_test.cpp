// The networks built from SDXL base 1.0's real configs have exactly the parameter names
// and shapes of the real checkpoints (sdxl-base-1.0-manifest/*.tsv), so real weights load.
#include "sdxl_dreambooth/model/lora_export.h"
#include "sdxl_dreambooth/model/lora_import.h"
#include "sdxl_dreambooth/nn/autoencoder_kl.h"
#include "sdxl_dreambooth/nn/lora_network.h"
#include "sdxl_dreambooth/nn/clip_text_model.h"
#include "sdxl_dreambooth/nn/unet_2d_condition.h"
#include "support/process.h"
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

// Writes `net` in both formats, reads each file back, hands it to `check`, and applies it to
// `unet`: every adapter lands on a module, none is left over.
template <typename Check>
void for_both_files(const nn::LoraNetwork& net, nn::UNet2DConditionModel& unet, const Check& check) {
  test::TempDir dir;
  const auto weights = model::lora_weights(net, "unet", 2);
  for (const auto format : {model::LoraFormat::kKohya, model::LoraFormat::kDiffusers}) {
    SCOPED_TRACE(model::lora_format_name(format));
    const std::string path = (dir / (std::string(model::lora_format_name(format)) + ".safetensors")).string();
    model::write_lora_file(path, {weights}, format, {});
    const auto file = model::read_lora_file(path);
    check(format, file);
    const auto report = model::apply_lora(*unet, file.unet, path, 1.0, /*merge=*/false);
    EXPECT_EQ(report.applied, net.size());
    EXPECT_TRUE(report.unused.empty());
  }
}

// lora.preset on SDXL base 1.0: "attention" wraps the manifest's 560 projections, "kohya" 722
// layers (+ 70 transformer blocks × ff.net.0.proj, ff.net.2 and 11 Transformer2DModels ×
// proj_in, proj_out), kohya's count. The kohya file of the 722 names every module as kohya
// writes it (lora_unet_<SGM path>) and loads back onto all of them, as does the diffusers file.
TEST(FullSizeShapes, LoraPresetsAndTheirFileNames) {
  SDXL_REQUIRE_REFERENCE();
  HalfDefault half;
  const auto cfg = model::UNetConfig::load(test::reference_dir() / "sdxl-base-1.0-manifest" / "unet.config.json");
  nn::UNet2DConditionModel unet(cfg);
  auto gen = at::detail::createCPUGenerator(0);
  const auto net = nn::LoraNetwork::inject(
      *unet, {4, 4.0, {"to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"}}, gen,
      "UNet");
  ASSERT_EQ(net.size(), 722u);
  std::size_t attention = 0;
  const auto targets = manifest("unet_lora_targets");
  for (const auto& p : net.module_paths()) attention += targets.count(p + ".weight");
  EXPECT_EQ(attention, 560u);
  EXPECT_EQ(targets.size(), 560u);

  for_both_files(net, unet, [](model::LoraFormat format, const model::LoraFileContents& file) {
    EXPECT_EQ(file.unet.size(), 722u);
    if (format == model::LoraFormat::kKohya) {
      EXPECT_EQ(file.unet.count("input_blocks_4_1_proj_in"), 1u);
      EXPECT_EQ(file.unet.count("output_blocks_2_1_transformer_blocks_9_ff_net_0_proj"), 1u);
      EXPECT_EQ(file.unet.count("middle_block_1_transformer_blocks_0_ff_net_2"), 1u);
    }
  });
}

// lora.preset = "kohya_conv" (kohya's LoCon) on SDXL base 1.0: the 722 layers of "kohya" plus,
// in the 17 ResnetBlock2Ds, conv1 and conv2 (3x3), time_emb_proj (linear) and the 11
// conv_shortcuts (1x1), and the 2 downsamplers' and 2 upsamplers' 3x3 convolutions: 788 modules,
// 739 linear and 49 convolutions. Both files name them as kohya does and load back onto all.
TEST(FullSizeShapes, LoconPresetAndItsFileNames) {
  SDXL_REQUIRE_REFERENCE();
  HalfDefault half;
  const auto cfg = model::UNetConfig::load(test::reference_dir() / "sdxl-base-1.0-manifest" / "unet.config.json");
  nn::UNet2DConditionModel unet(cfg);
  auto gen = at::detail::createCPUGenerator(0);
  nn::LoraSpec spec{4, 4.0, {"to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
                             "conv1", "conv2", "conv_shortcut", "time_emb_proj", "downsamplers.0.conv",
                             "upsamplers.0.conv"}};
  spec.conv_rank = 2;
  spec.conv_alpha = 1.0;
  const auto net = nn::LoraNetwork::inject(*unet, spec, gen, "UNet");
  EXPECT_EQ(net.size(), 788u);
  EXPECT_EQ(net.modules().size(), 739u);
  ASSERT_EQ(net.conv_modules().size(), 49u);
  std::size_t shortcuts = 0;
  for (std::size_t i = 0; i < net.conv_paths().size(); ++i) {
    const bool one_by_one = net.conv_modules()[i]->shape().kernel == 1;
    shortcuts += one_by_one;
    // 1x1 convolutions take lora.rank, 3x3 ones lora.conv_rank (kohya's conv_dim).
    EXPECT_EQ(net.conv_modules()[i]->lora_rank(), one_by_one ? 4 : 2) << net.conv_paths()[i];
  }
  EXPECT_EQ(shortcuts, 11u);

  for_both_files(net, unet, [](model::LoraFormat format, const model::LoraFileContents& file) {
    EXPECT_EQ(file.unet.size(), 788u);
    if (format == model::LoraFormat::kKohya) {
      for (const char* name : {"input_blocks_1_0_in_layers_2", "input_blocks_1_0_out_layers_3",
                               "input_blocks_1_0_emb_layers_1", "input_blocks_4_0_skip_connection",
                               "input_blocks_3_0_op", "input_blocks_6_0_op", "middle_block_0_in_layers_2",
                               "middle_block_2_out_layers_3", "output_blocks_0_0_skip_connection",
                               "output_blocks_2_2_conv", "output_blocks_5_2_conv", "output_blocks_8_0_in_layers_2"}) {
        EXPECT_EQ(file.unet.count(name), 1u) << name;
      }
      const auto& conv = file.unet.at("input_blocks_1_0_in_layers_2");
      EXPECT_EQ(conv.down.sizes(), (std::vector<std::int64_t>{2, 320, 3, 3}));
      EXPECT_EQ(conv.up.sizes(), (std::vector<std::int64_t>{320, 2, 1, 1}));
      EXPECT_EQ(conv.alpha, 1.0);
    }
  });
}
