// Model folders, the HF cache, config.json parsing and strict loading (with tiny-sdxl).
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/io/safetensors_torch.h"
#include "sdxl_dreambooth/model/component_loader.h"
#include "sdxl_dreambooth/model/legacy_keys.h"
#include "sdxl_dreambooth/model/model_location.h"
#include "support/error_capture.h"
#include "support/process.h"
#include "support/reference.h"

#include <gtest/gtest.h>

#include <cstdlib>

using namespace sdxl;
namespace fs = std::filesystem;

namespace {

using test::error_of;

// A copy of a tiny-sdxl component whose weights are rewritten by `edit`.
void copy_component(const fs::path& from, const fs::path& to,
                    const std::function<void(std::vector<std::pair<std::string, torch::Tensor>>&)>& edit) {
  fs::create_directories(to);
  fs::copy_file(from / "config.json", to / "config.json");
  auto weights = model::WeightSource::open_component(from, std::nullopt);
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& n : weights.names()) tensors.emplace_back(n, weights.tensor(n).clone());
  edit(tensors);
  io::write_safetensors((to / "diffusion_pytorch_model.safetensors").string(), tensors);
}

}  // namespace

TEST(ModelFiles, HubIdResolvesOfflineInTheHfCache) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir home;
  const fs::path repo = home / "hub" / "models--stabilityai--stable-diffusion-xl-base-1.0";
  fs::create_directories(repo / "refs");
  fs::create_directories(repo / "snapshots");
  fs::create_directory_symlink(test::reference_dir() / "tiny-sdxl", repo / "snapshots" / "abc123");
  test::write_file(repo / "refs" / "main", "abc123\n");
  setenv("HF_HOME", home.path().c_str(), 1);
  const auto pipe = model::open_pipeline("stabilityai/stable-diffusion-xl-base-1.0", "main");
  EXPECT_EQ(pipe.root, repo / "snapshots" / "abc123");
  EXPECT_EQ(model::resolve_model_dir("stabilityai/stable-diffusion-xl-base-1.0", "abc123"), repo / "snapshots" / "abc123");
  const std::string e = error_of([] { model::open_pipeline("stabilityai/nothing-here", "main"); });
  EXPECT_NE(e.find("model 'stabilityai/nothing-here' not found; looked in:"), std::string::npos) << e;
  EXPECT_NE(e.find((home / "hub" / "models--stabilityai--nothing-here" / "refs" / "main").string()), std::string::npos) << e;
  unsetenv("HF_HOME");
}

TEST(ModelFiles, VariantFilesAndTheirAbsence) {
  SDXL_REQUIRE_REFERENCE();
  const auto unet = test::reference_dir() / "tiny-sdxl" / "unet";
  auto fp16 = model::WeightSource::open_component(unet, std::string("fp16"));
  EXPECT_EQ(fp16.info("conv_in.weight").dtype, io::DType::kF16);
  const std::string e = error_of([&] { model::WeightSource::open_component(unet, std::string("bf16")); });
  EXPECT_NE(e.find("no 'bf16' variant safetensors weights in"), std::string::npos) << e;
}

TEST(ModelFiles, ShardedCheckpointViaIndex) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  const auto vae = test::reference_dir() / "tiny-sdxl" / "vae";
  auto full = model::WeightSource::open_component(vae, std::nullopt);
  std::vector<std::pair<std::string, torch::Tensor>> a, b;
  nlohmann::json map;
  std::size_t i = 0;
  for (const auto& n : full.names()) {
    const bool first = i++ % 2 == 0;
    (first ? a : b).emplace_back(n, full.tensor(n));
    map[n] = first ? "diffusion_pytorch_model-00001-of-00002.safetensors" : "diffusion_pytorch_model-00002-of-00002.safetensors";
  }
  fs::copy_file(vae / "config.json", dir / "config.json");
  io::write_safetensors((dir / "diffusion_pytorch_model-00001-of-00002.safetensors").string(), a);
  io::write_safetensors((dir / "diffusion_pytorch_model-00002-of-00002.safetensors").string(), b);
  test::write_file(dir / "diffusion_pytorch_model.safetensors.index.json", nlohmann::json{{"weight_map", map}}.dump());
  model::ComponentInfo info;
  model::load_vae(dir.path(), {}, &info);
  EXPECT_EQ(info.report.loaded, full.names().size());
}

TEST(ModelFiles, LoaderReportsRenamedKeyWrongShapeAndTruncation) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  const auto vae = test::reference_dir() / "tiny-sdxl" / "vae";
  copy_component(vae, dir / "vae", [](auto& t) {
    for (auto& [name, tensor] : t) {
      if (name == "decoder.conv_in.bias") name = "decoder.conv_in.biass";
      if (name == "encoder.conv_out.bias") tensor = torch::zeros({3});
    }
  });
  const std::string e = error_of([&] { model::load_vae(dir / "vae", {}); });
  EXPECT_NE(e.find("1 missing, 1 unexpected, 1 mis-shaped"), std::string::npos) << e;
  EXPECT_NE(e.find("missing: decoder.conv_in.bias [32]"), std::string::npos) << e;
  EXPECT_NE(e.find("unexpected: decoder.conv_in.biass [32]"), std::string::npos) << e;
  EXPECT_NE(e.find("mis-shaped: encoder.conv_out.bias: module expects [8], encoder.conv_out.bias in the file is [3]"),
            std::string::npos)
      << e;

  const auto file = dir / "vae" / "diffusion_pytorch_model.safetensors";
  fs::resize_file(file, fs::file_size(file) / 2);
  const std::string t = error_of([&] { model::load_vae(dir / "vae", {}); });
  EXPECT_NE(t.find(file.string()), std::string::npos) << t;
  EXPECT_NE(t.find("truncated"), std::string::npos) << t;
}

TEST(ModelFiles, LegacyVaeAttentionNamesLoad) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  const auto vae = test::reference_dir() / "tiny-sdxl" / "vae";
  copy_component(vae, dir / "vae", [](auto& t) {
    for (auto& [name, tensor] : t) {
      for (const auto& [now, old] : std::vector<std::pair<std::string, std::string>>{
               {".to_q.", ".query."}, {".to_k.", ".key."}, {".to_v.", ".value."}, {".to_out.0.", ".proj_attn."}}) {
        const auto pos = name.find(now);
        if (name.find("mid_block.attentions") != std::string::npos && pos != std::string::npos) {
          name = name.substr(0, pos) + old + name.substr(pos + now.size());
          if (tensor.dim() == 2) tensor = tensor.reshape({tensor.size(0), tensor.size(1), 1, 1});
        }
      }
    }
  });
  model::ComponentInfo info;
  auto legacy = model::load_vae(dir / "vae", {}, &info);
  auto modern = model::load_vae(vae, {});
  EXPECT_TRUE(torch::equal(legacy->encoder->mid_block->attentions[0]->as<nn::Attention>()->to_q->weight,
                           modern->encoder->mid_block->attentions[0]->as<nn::Attention>()->to_q->weight));
  EXPECT_EQ(model::canonical_key("decoder.mid_block.attentions.0.proj_attn.bias"),
            "decoder.mid_block.attentions.0.to_out.0.bias");
}

TEST(ModelFiles, ConfigErrorsNameFileAndKey) {
  const auto e1 = error_of([] {
    model::UNetConfig::from_json(model::JsonConfig(nlohmann::json::parse(R"({"down_block_types":["DownBlock2D"],
      "up_block_types":["UpBlock2D"],"block_out_channels":[32],"class_embed_type":"timestep"})"), "unet/config.json"));
  });
  EXPECT_NE(e1.find("'unet/config.json': unsupported class_embed_type = \"timestep\""), std::string::npos) << e1;
  const auto e2 = error_of([] {
    model::UNetConfig::from_json(model::JsonConfig(nlohmann::json::parse(R"({"down_block_types":["DownBlock2D","DownBlock2D"],
      "up_block_types":["UpBlock2D","UpBlock2D"],"block_out_channels":[32,64],"transformer_layers_per_block":[1,2,3]})"),
                                                   "unet/config.json"));
  });
  EXPECT_NE(e2.find("transformer_layers_per_block' must be an integer or a list of 2 integers"), std::string::npos) << e2;
  // transformer_layers_per_block as an int is broadcast; attention_head_dim holds the heads.
  const auto c = model::UNetConfig::from_json(model::JsonConfig(nlohmann::json::parse(R"({"down_block_types":["DownBlock2D","CrossAttnDownBlock2D"],
      "up_block_types":["CrossAttnUpBlock2D","UpBlock2D"],"block_out_channels":[32,64],"transformer_layers_per_block":2,
      "attention_head_dim":[2,4],"upcast_attention":null})"), "unet/config.json"));
  EXPECT_EQ(c.transformer_layers_per_block, (std::vector<std::int64_t>{2, 2}));
  EXPECT_EQ(c.num_attention_heads, (std::vector<std::int64_t>{2, 4}));
  EXPECT_FALSE(c.upcast_attention);
}

TEST(ModelFiles, NotAPipelineFolder) {
  test::TempDir dir;
  const auto e = error_of([&] { model::open_pipeline(dir.path().string(), "main"); });
  EXPECT_NE(e.find("is not a diffusers pipeline folder: no model_index.json"), std::string::npos) << e;
}
