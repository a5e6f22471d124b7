// Settings `train` and `bench` derive from a config and the device: defaults that depend on
// where the step runs.
#include "sdxl_dreambooth/config/config.h"
#include "sdxl_dreambooth/train/training_setup.h"

#include <gtest/gtest.h>

using namespace sdxl;

namespace {
config::Config load(const std::vector<std::string>& overrides = {}) {
  return config::load_config_text(R"(
[model]
pretrained = "models/tiny-sdxl"
[data]
instance_dir = "subjects/dog"
instance_prompt = "a photo of sks dog"
)",
                                  "cfg.toml", overrides);
}
}  // namespace

// Fused projections are faster on a GPU and slower on CPUs (docs/benchmarks.md): unset, the
// device decides; set, the config does.
TEST(TrainingSetup, FuseProjectionsDefaultsToTheDevice) {
  const torch::Device cpu(torch::kCPU), cuda(torch::kCUDA, 0);
  const auto unset = load();
  EXPECT_FALSE(unset.has("train.fuse_projections"));
  EXPECT_FALSE(train::fuse_projections(unset, cpu));
  EXPECT_TRUE(train::fuse_projections(unset, cuda));
  const auto on = load({"train.fuse_projections=true"});
  EXPECT_TRUE(train::fuse_projections(on, cpu));
  const auto off = load({"train.fuse_projections=false"});
  EXPECT_FALSE(train::fuse_projections(off, cuda));
  EXPECT_EQ(off.get_optional_bool("train.fuse_projections"), std::optional<bool>(false));
}
