// Model folders, the HF cache, config.json parsing and strict loading (with tiny-sdxl).
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/io/safetensors_torch.h"
#include "sdxl_dreambooth/model/clip_text_config.h"
#include "sdxl_dreambooth/model/component_loader.h"
#include "sdxl_dreambooth/model/legacy_keys.h"
#include "sdxl_dreambooth/model/model_location.h"
#include "sdxl_dreambooth/model/scheduler_config.h"
#include "sdxl_dreambooth/model/unet_config.h"
#include "sdxl_dreambooth/model/vae_config.h"
#include "support/error_capture.h"
#include "support/process.h"
#include "support/reference.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <limits>
#include <tuple>

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

// A weight stored as integers is refused, not converted to float and trained on.
TEST(ModelFiles, IntegerWeightsAreRefusedForFloatParameters) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  const auto vae = test::reference_dir() / "tiny-sdxl" / "vae";
  copy_component(vae, dir / "vae", [](auto& t) {
    for (auto& [name, tensor] : t) {
      if (name == "decoder.conv_in.weight") tensor = tensor.to(torch::kInt32);
    }
  });
  const std::string e = error_of([&] { model::load_vae(dir / "vae", {}); });
  EXPECT_NE(e.find("0 missing, 0 unexpected, 0 mis-shaped, 1 of a non-float dtype"), std::string::npos) << e;
  EXPECT_NE(e.find("non-float: decoder.conv_in.weight: module expects floating-point weights, decoder.conv_in.weight "
                   "in the file is I32"),
            std::string::npos)
      << e;
}

// A NaN in a base weight would make every image black: refused naming the tensor.
TEST(ModelFiles, NonFiniteWeightsAreRefused) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  copy_component(test::reference_dir() / "tiny-sdxl" / "vae", dir / "vae", [](auto& t) {
    for (auto& [name, tensor] : t) {
      if (name == "decoder.conv_in.bias") tensor[0] = std::numeric_limits<float>::quiet_NaN();
    }
  });
  const std::string e = error_of([&] { model::load_vae(dir / "vae", {}); });
  EXPECT_NE(e.find("1 tensor(s) hold NaN or infinite values, e.g. decoder.conv_in.bias"), std::string::npos) << e;
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

namespace {

// The error loading `component`'s config.json from tiny-sdxl with `key` set to `value` (JSON).
std::string hostile_config_error(const std::string& component, const std::string& key, const std::string& value) {
  const fs::path file = test::reference_dir() / "tiny-sdxl" / component /
                        (component == "scheduler" ? "scheduler_config.json" : "config.json");
  nlohmann::json j = nlohmann::json::parse(test::read_file(file));
  j[key] = nlohmann::json::parse(value);
  const model::JsonConfig cfg(j, component + "/config.json");
  return error_of([&] {
    if (component == "unet") model::UNetConfig::from_json(cfg);
    if (component == "vae") model::VaeConfig::from_json(cfg);
    if (component == "text_encoder") model::ClipTextConfig::from_json(cfg);
    if (component == "scheduler") model::SchedulerConfig::from_json(cfg);
  });
}

}  // namespace

// What crashed (SIGFPE), threw raw LibTorch errors or exhausted the host at e7d097b: each is
// now refused while reading config.json, naming the file, the key and the rule.
TEST(ModelFiles, HostileConfigValuesAreRefusedBeforeAnythingIsBuilt) {
  SDXL_REQUIRE_REFERENCE();
  const std::vector<std::tuple<std::string, std::string, std::string, std::string>> cases{
      {"unet", "norm_num_groups", "0", "key 'norm_num_groups' must be an integer in [1, 1024], got 0"},
      {"vae", "norm_num_groups", "0", "key 'norm_num_groups' must be an integer in [1, 1024], got 0"},
      {"unet", "attention_head_dim", "0", "key 'attention_head_dim' must be an integer or a list of integers in"},
      {"text_encoder", "num_attention_heads", "0", "key 'num_attention_heads' must be an integer in [1, 1024]"},
      {"unet", "attention_head_dim", "[2, 4, 1000000]", "key 'attention_head_dim' must be"},
      {"unet", "block_out_channels", "[32, 64, 1000000]", "key 'block_out_channels' must be a list of integers in"},
      {"unet", "cross_attention_dim", "1099511627776", "key 'cross_attention_dim' must be"},
      {"unet", "in_channels", "0", "key 'in_channels' must be an integer in [1, 16384], got 0"},
      {"unet", "in_channels", "null", "key 'in_channels' must be an integer in [1, 16384], got null"},
      {"unet", "norm_eps", "null", "key 'norm_eps' must be a number, got null"},
      {"unet", "layers_per_block", "100000", "key 'layers_per_block' must be"},
      {"unet", "transformer_layers_per_block", "[1, 2, 1000000]", "key 'transformer_layers_per_block' must be"},
      {"unet", "norm_eps", "-1", "key 'norm_eps' must be a number in (0.0, 1.0]"},
      {"vae", "latent_channels", "-4", "key 'latent_channels' must be"},
      {"text_encoder", "hidden_size", "33", "hidden_size = 33: not divisible by num_attention_heads"},
      {"scheduler", "beta_start", "2", "key 'beta_start' must be a number in (0.0, 1.0], got 2"},
      {"scheduler", "beta_end", "-1", "key 'beta_end' must be a number in (0.0, 1.0], got -1"},
      {"scheduler", "num_train_timesteps", "0", "key 'num_train_timesteps' must be an integer in [2, 100000]"},
      {"vae", "latents_mean", "[0.1, 0.2]", "key 'latents_mean' must be a list of 4 finite numbers"},
      {"vae", "latents_std", "[1, 1, 1, 1]", "latents_mean = null (default): must be given with the other of latents_mean"},
  };
  for (const auto& [component, key, value, message] : cases) {
    const std::string e = hostile_config_error(component, key, value);
    EXPECT_NE(e.find("'" + component + "/config.json'"), std::string::npos) << key << " = " << value << ": " << e;
    EXPECT_NE(e.find(message), std::string::npos) << key << " = " << value << ": " << e;
  }
  // A channel count the heads do not divide.
  const std::string heads = hostile_config_error("unet", "attention_head_dim", "7");
  EXPECT_NE(heads.find("is not divisible by attention_head_dim"), std::string::npos) << heads;
}

// EDM bases: the scheduler's EDM settings and the VAE's per-channel latent statistics are read;
// what this program cannot run is refused naming the key.
TEST(ModelFiles, EdmSchedulerAndLatentStatistics) {
  SDXL_REQUIRE_REFERENCE();
  const auto edm =
      model::SchedulerConfig::load(test::reference_dir() / "edm-scheduler" / "scheduler_config.json");
  EXPECT_TRUE(edm.edm());
  EXPECT_EQ(edm.sigma_max, 80.0);
  EXPECT_EQ(edm.sigma_data, 0.5);
  EXPECT_FALSE(model::SchedulerConfig::load((test::reference_dir() / "tiny-sdxl") / "scheduler" / "scheduler_config.json").edm());
  nlohmann::json j = nlohmann::json::parse(test::read_file(test::reference_dir() / "edm-scheduler" /
                                                           "scheduler_config.json"));
  j["sigma_schedule"] = "exponential";
  const auto e = error_of([&] { model::SchedulerConfig::from_json(model::JsonConfig(j, "scheduler/config.json")); });
  EXPECT_NE(e.find("sigma_schedule"), std::string::npos) << e;
  nlohmann::json vae = nlohmann::json::parse(test::read_file((test::reference_dir() / "tiny-sdxl") / "vae" / "config.json"));
  vae["latents_mean"] = {0.1, 0.2, 0.3, 0.4};
  vae["latents_std"] = {1.0, 2.0, 3.0, 4.0};
  const auto c = model::VaeConfig::from_json(model::JsonConfig(vae, "vae/config.json"));
  EXPECT_EQ(c.latents_mean, (std::vector<double>{0.1, 0.2, 0.3, 0.4}));
  EXPECT_EQ(c.latents_std, (std::vector<double>{1.0, 2.0, 3.0, 4.0}));
}
