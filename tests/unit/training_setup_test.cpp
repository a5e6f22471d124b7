// Settings `train` and `bench` derive from a config and the device: defaults that depend on
// where the step runs.
#include "sdxl_dreambooth/config/config.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/nn/geglu_product.h"
#include "sdxl_dreambooth/train/lora_outputs.h"
#include "sdxl_dreambooth/train/prodigy.h"
#include "sdxl_dreambooth/train/step_plan.h"
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
           {"lora.train_text_encoder=true", "lora.train_text_encoder = true"},
           {"lora.dropout=0.1", "lora.dropout > 0"}}) {
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

// train.scale_lr: diffusers' lr × grad_accum × batch × ranks, before the schedule.
TEST(TrainingSetup, ScaleLrMultipliesByTheGlobalBatch) {
  const auto plain = load({"train.learning_rate=1e-4", "train.batch_size=2", "train.grad_accum=3"});
  EXPECT_DOUBLE_EQ(train::StepPlan(plain.train, false, {10}, 4, 0).learning_rate, 1e-4);
  const auto scaled =
      load({"train.learning_rate=1e-4", "train.batch_size=2", "train.grad_accum=3", "train.scale_lr=true"});
  const train::StepPlan plan(scaled.train, false, {10}, 4, 0);
  EXPECT_DOUBLE_EQ(plan.learning_rate, 1e-4 * 3 * 2 * 4);
  EXPECT_DOUBLE_EQ(plan.lr.lr(0), plan.learning_rate);  // the constant schedule's peak
}

// train.allow_tf32 turns on TF32 for cuBLAS and cuDNN (process-wide LibTorch flags, which exist
// without a GPU); false restores PyTorch's matmul default.
TEST(TrainingSetup, AllowTf32SetsBothLibraries) {
  auto& context = at::globalContext();
  const bool cudnn_before = context.allowTF32CuDNN();
  train::configure_cuda_math(load({"train.allow_tf32=true"}).train);
  EXPECT_TRUE(context.allowTF32CuBLAS());
  EXPECT_TRUE(context.allowTF32CuDNN());
  train::configure_cuda_math(load().train);
  EXPECT_FALSE(context.allowTF32CuBLAS());
  context.setAllowTF32CuDNN(cudnn_before);
}

// prior.generation_precision: its dtype, fp16 refused off CUDA naming the key.
TEST(TrainingSetup, PrecisionNamesAreDtypes) {
  const torch::Device cpu(torch::kCPU), cuda(torch::kCUDA, 0);
  EXPECT_EQ(train::precision_dtype("fp32", cpu, "k"), torch::kFloat);
  EXPECT_EQ(train::precision_dtype("bf16", cpu, "k"), torch::kBFloat16);
  EXPECT_EQ(train::precision_dtype("fp16", cuda, "k"), torch::kHalf);
  try {
    train::precision_dtype("fp16", cpu, "prior.generation_precision");
    ADD_FAILURE() << "fp16 accepted on the CPU";
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("prior.generation_precision = \"fp16\" needs a CUDA device"),
              std::string::npos)
        << e.what();
  }
}

// optimizer.kind picks the class; the Prodigy keys reach it, defaults as diffusers' script.
TEST(TrainingSetup, TheOptimizerFollowsTheConfig) {
  auto params = [] { return std::vector<train::ParamGroup>{{{torch::zeros({3})}, 1.0, 0.0}}; };
  EXPECT_EQ(train::make_optimizer(load().optimizer, params())->kind(), "AdamW");
  const auto cfg = load({"optimizer.kind=\"prodigy\"", "optimizer.prodigy_d0=1e-5", "optimizer.prodigy_beta3=0.98"});
  const auto opt = train::make_optimizer(cfg.optimizer, params());
  ASSERT_EQ(opt->kind(), "Prodigy");
  const auto& o = dynamic_cast<const train::Prodigy&>(*opt).options();
  EXPECT_EQ(o.d0, 1e-5);
  EXPECT_EQ(o.beta3, std::optional<double>(0.98));
  EXPECT_TRUE(o.use_bias_correction);
  EXPECT_TRUE(o.safeguard_warmup);
  EXPECT_TRUE(o.decouple);
  EXPECT_TRUE(std::isinf(o.growth_rate));
  EXPECT_EQ(train::optimizer_type(cfg.optimizer), "Prodigy");
  EXPECT_EQ(load().optimizer.text_encoder_weight_decay, 1e-3);
}
