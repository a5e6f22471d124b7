// Settings `train` and `bench` derive from a config and the device: defaults that depend on
// where the step runs.
#include "sdxl_dreambooth/config/config.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/nn/geglu_product.h"
#include "sdxl_dreambooth/train/lora_outputs.h"
#include "sdxl_dreambooth/train/training_setup.h"

#include <gtest/gtest.h>

using namespace sdxl;

namespace {
config::RunConfig load(const std::vector<std::string>& overrides = {}) {
  return config::load_config_text(R"(
[model]
pretrained = "models/tiny-sdxl"
[data]
instance_dir = "subjects/dog"
instance_prompt = "a photo of sks dog"
)",
                                  "cfg.toml", overrides)
      .typed();
}
}  // namespace

// Fused projections are faster on a GPU and slower on CPUs (docs/benchmarks.md): unset, the
// device decides; set, the config does.
TEST(TrainingSetup, FuseProjectionsDefaultsToTheDevice) {
  const torch::Device cpu(torch::kCPU), cuda(torch::kCUDA, 0);
  const auto unset = load();
  EXPECT_FALSE(unset.train.fuse_projections.has_value());
  EXPECT_FALSE(train::fuse_projections(unset.train, cpu));
  EXPECT_TRUE(train::fuse_projections(unset.train, cuda));
  const auto on = load({"train.fuse_projections=true"});
  EXPECT_TRUE(train::fuse_projections(on.train, cpu));
  const auto off = load({"train.fuse_projections=false"});
  EXPECT_FALSE(train::fuse_projections(off.train, cuda));
  EXPECT_EQ(off.train.fuse_projections, std::optional<bool>(false));
}

// train.cuda_graphs: on for CUDA only; the combinations a recorded step cannot serve are an
// error on any device, naming both keys.
TEST(TrainingSetup, CudaGraphsOnCudaOnlyAndNotWithFp16OrTextEncoderTraining) {
  const torch::Device cpu(torch::kCPU), cuda(torch::kCUDA, 0);
  EXPECT_FALSE(train::cuda_graphs(load().train, load().lora, cuda));
  const auto on = load({"train.cuda_graphs=true"});
  EXPECT_TRUE(train::cuda_graphs(on.train, on.lora, cuda));
  EXPECT_FALSE(train::cuda_graphs(on.train, on.lora, cpu));
  const auto bf16 = load({"train.cuda_graphs=true", "train.mixed_precision=\"bf16\""});
  EXPECT_TRUE(train::cuda_graphs(bf16.train, bf16.lora, cuda));
  for (const auto& [bad, key] : std::vector<std::pair<std::string, std::string>>{
           {"train.mixed_precision=\"fp16\"", "train.mixed_precision = \"fp16\""},
           {"lora.train_text_encoder=true", "lora.train_text_encoder = true"}}) {
    const auto cfg = load({"train.cuda_graphs=true", bad});
    for (const auto& device : {cpu, cuda}) {
      try {
        train::cuda_graphs(cfg.train, cfg.lora, device);
        ADD_FAILURE() << bad << " was accepted";
      } catch (const UsageError& e) {
        EXPECT_NE(std::string(e.what()).find("train.cuda_graphs = true"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
      }
    }
    const auto alone = load({bad});
    EXPECT_FALSE(train::cuda_graphs(alone.train, alone.lora, cuda));  // only together
  }
}

TEST(TrainingSetup, FusedKernelsOnCudaOnlyAndOnlyWhereBuilt) {
  const torch::Device cpu(torch::kCPU), cuda(torch::kCUDA, 0);
  const auto on = load({"train.fused_kernels=true"});
  EXPECT_FALSE(train::fused_kernels(load().train, cuda));
  EXPECT_FALSE(train::fused_kernels(on.train, cpu));
  if (nn::geglu_kernels_built()) {
    EXPECT_TRUE(train::fused_kernels(on.train, cuda));
    return;
  }
  try {
    train::fused_kernels(on.train, cuda);
    ADD_FAILURE() << "a build without the kernels accepted train.fused_kernels = true";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("train.fused_kernels = true"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("CUDA compiler"), std::string::npos) << e.what();
  }
}

// The kohya file is named after the run; it never takes the diffusers file's name.
TEST(TrainingSetup, TheRunNameComesFromTheOutputFolder) {
  config::OutputConfig o;
  o.dir = "/runs/sks-dog/";
  EXPECT_EQ(train::run_name(o), "sks-dog");
  o.dir = "/runs/pytorch_lora_weights";
  EXPECT_EQ(train::run_name(o), "pytorch_lora_weights_kohya");
  o.dir = ".";
  EXPECT_EQ(train::run_name(o), "lora");
  o.name = "my run";
  EXPECT_EQ(train::run_name(o), "my run");
}
