// LoRA training steps through train::run_train_step on small_unet(), one rank, synthetic
// batches uploaded as the trainer uploads them: the same steps on the CPU (unit tests) and on
// CUDA (cuda_parity_tests, under the sync check).
#pragma once

#include "sdxl_dreambooth/dist/collectives.h"
#include "sdxl_dreambooth/nn/lora_network.h"
#include "sdxl_dreambooth/nn/unet_2d_condition.h"
#include "sdxl_dreambooth/sampling/noise_schedule.h"
#include "sdxl_dreambooth/train/adamw.h"
#include "sdxl_dreambooth/train/loss_scaler.h"
#include "sdxl_dreambooth/train/train_step.h"

#include <memory>
#include <optional>

namespace sdxl::test {

struct SmallLoraTrainingOptions {
  torch::Dtype dtype = torch::kFloat;  // the frozen weights' and activations' (adapters: float32)
  std::int64_t grad_accum = 1;
  bool gradient_checkpointing = false;
  bool fuse_projections = false;
  bool fused_kernels = false;                   // train.fused_kernels (CUDA builds with the kernels)
  std::optional<train::StepGraph::Mode> graph;  // train.cuda_graphs, or its emulation
  std::optional<bool> cast_adapters_once;       // TrainStepParts' (unset: on CUDA)
};

class SmallLoraTraining {
 public:
  // Adapters rank 4 on every attention projection; min-SNR weighting and a clipping norm low
  // enough to clip, so the step's device-side lookups and reductions all run. The same
  // options give the same weights and batches on every run.
  explicit SmallLoraTraining(const torch::Device& device, const SmallLoraTrainingOptions& options = {});
  // One optimizer step on fresh micro-batches of 2.
  train::StepResult step();

  const nn::LoraNetwork& lora() const { return lora_; }

 private:
  torch::Device device_;
  at::Generator gen_;
  nn::UNet2DConditionModel unet_{nullptr};
  nn::LoraNetwork lora_;
  std::unique_ptr<train::AdamWGroups> optimizer_;
  train::DynamicLossScaler no_scaling_{false};
  std::unique_ptr<dist::Collectives> comm_;
  std::unique_ptr<sampling::NoiseSchedule> schedule_;
  std::unique_ptr<train::StepGraph> graph_;
  train::TrainStepParts parts_;
  train::StepTimes times_;
  std::int64_t steps_ = 0;
};

}  // namespace sdxl::test
