// One optimizer step of LoRA training, shared by `train` and `bench` so the benchmark times the
// code that trains: grad_accum micro-batches (diffusion loss forward, backward), one all-reduce
// of the gradients over the ranks, fp16 unscaling, clipping and the AdamW updates, each phase
// timed.
#pragma once

#include "sdxl_dreambooth/dist/collectives.h"
#include "sdxl_dreambooth/train/adamw.h"
#include "sdxl_dreambooth/train/diffusion_loss.h"
#include "sdxl_dreambooth/train/loss_scaler.h"
#include "sdxl_dreambooth/train/preemption.h"

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <vector>

namespace sdxl::train {

// Seconds per phase, summed over the steps they were added for.
struct StepTimes {
  double data_s = 0, forward_s = 0, backward_s = 0, allreduce_s = 0, optimizer_s = 0;
  double total() const { return data_s + forward_s + backward_s + allreduce_s + optimizer_s; }
};

// An optimizer and its learning rate as a multiple of the schedule's (text encoders train at
// lora.text_encoder_lr).
struct OptimizerGroup {
  AdamW* optimizer = nullptr;
  double lr_scale = 1.0;
};

struct TrainStepParts {
  nn::UNet2DConditionModel unet{nullptr};
  const sampling::NoiseSchedule* schedule = nullptr;
  LossOptions loss;
  std::vector<torch::Tensor> params;       // every trained tensor, in a fixed order on all ranks
  std::vector<OptimizerGroup> optimizers;  // their parameters, concatenated, are `params`
  DynamicLossScaler* scaler = nullptr;
  dist::Collectives* comm = nullptr;
  std::int64_t grad_accum = 1;
  double max_grad_norm = 1.0;
  // Wait for the GPU at each phase boundary so its time lands in the phase that queued it
  // (bench); training leaves the device running ahead.
  bool synchronize_phases = false;
  // Read before the gradient all-reduce, which carries it to every rank (training only).
  const PreemptionSignals* signals = nullptr;
};

struct StepResult {
  double loss = 0;              // mean over micro-batches and ranks
  double grad_norm = 0;         // before clipping
  bool skipped = false;         // fp16: gradients not finite, no update (the loss scale backed off)
  bool stop_requested = false;  // some rank was asked to stop (preemption); the same on every rank
};

// Runs optimizer step `step` (0-based) at learning rate `lr`; `next_batch(micro)` builds its
// micro-batches. Throws an Error naming the step when the loss or gradients are not finite
// without fp16 loss scaling (nothing is updated then).
StepResult run_train_step(const TrainStepParts& parts, std::int64_t step, double lr,
                          const std::function<DiffusionBatch(std::int64_t micro)>& next_batch, StepTimes& times);

}  // namespace sdxl::train
