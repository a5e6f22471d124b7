// One optimizer step of LoRA training, shared by `train` and `bench` so the benchmark times the
// code that trains: grad_accum micro-batches (diffusion loss forward, backward), one all-reduce
// of the gradients over the ranks, fp16 unscaling, clipping and the optimizer's update, each phase
// timed.
#pragma once

#include "sdxl_dreambooth/dist/collectives.h"
#include "sdxl_dreambooth/nn/lora_network.h"
#include "sdxl_dreambooth/train/optimizer.h"
#include "sdxl_dreambooth/train/diffusion_loss.h"
#include "sdxl_dreambooth/train/loss_scaler.h"
#include "sdxl_dreambooth/train/preemption.h"
#include "sdxl_dreambooth/train/step_graph.h"

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

namespace sdxl::train {

// Seconds per phase, summed over the steps they were added for.
struct StepTimes {
  double data_s = 0, forward_s = 0, backward_s = 0, allreduce_s = 0, optimizer_s = 0;
  double total() const { return data_s + forward_s + backward_s + allreduce_s + optimizer_s; }
};

struct TrainStepParts {
  nn::UNet2DConditionModel unet{nullptr};
  const sampling::NoiseSchedule* schedule = nullptr;
  const sampling::EdmSchedule* edm = nullptr;  // set: EDM-style training (edm_diffusion_loss)
  LossOptions loss;
  // The UNet's adapters: under bf16/fp16, cast for each forward pass at once (nn::AdapterCast)
  // where cast_adapters_once says so; unset, on CUDA only (on the CPU the pass's large buffers
  // cost more than the small casts: docs/benchmarks.md). Never with gradient checkpointing,
  // whose recomputed blocks cast their own.
  const nn::LoraNetwork* unet_lora = nullptr;
  std::optional<bool> cast_adapters_once;
  std::vector<torch::Tensor> params;       // every trained tensor, in a fixed order on all ranks
  Optimizer* optimizer = nullptr;          // its groups' parameters, concatenated, are `params`
  DynamicLossScaler* scaler = nullptr;
  dist::Collectives* comm = nullptr;
  std::int64_t grad_accum = 1;
  double max_grad_norm = 1.0;
  // Wait for the GPU at each phase boundary so its time lands in the phase that queued it
  // (bench); training leaves the device running ahead.
  bool synchronize_phases = false;
  // Read after the gradient all-reduce is queued; the step's host all-reduce carries it to
  // every rank (training only).
  const PreemptionSignals* signals = nullptr;
  // train.cuda_graphs: each micro-batch's forward and backward replayed from one recording
  // (not with fp16 loss scaling or text-encoder training: training_setup.h). Its time is
  // counted as forward time; backward reads 0.
  StepGraph* graph = nullptr;
};

// What a step leaves on the device. Its loss and gradient norm are not read back by the step:
// on CUDA the host queues the next steps while the GPU works, and the training loop reads a
// window of steps at once (read_step_values) where it needs them (logging, validation,
// checkpoints, the end). fp16 loss scaling is the exception: whether to skip a step is decided
// on the host, so that step reads its values (as torch.cuda.amp.GradScaler does).
struct StepResult {
  torch::Tensor loss;           // 0-d float32 on the device: mean over micro-batches and ranks
  torch::Tensor grad_norm;      // 0-d float32 on the device: before clipping
  bool skipped = false;         // fp16: gradients not finite, no update (the loss scale backed off)
  bool stop_requested = false;  // some rank was asked to stop (preemption); the same on every rank
  // The request came between two micro-batches: the step was given up before any update (no
  // loss, nothing changed), so the weights are those after the previous step.
  bool abandoned = false;
};

// Runs optimizer step `step` (0-based) at learning rate `lr`; `next_batch(micro)` builds its
// micro-batches. Nothing in it waits for the device except fp16 loss scaling (above) and, across
// ranks, the MPI backend, which reduces on the host. The NCCL backend queues the all-reduce
// behind the backward pass and keeps its deadline on a watchdog thread (dist/collectives.h).
StepResult run_train_step(const TrainStepParts& parts, std::int64_t step, double lr,
                          const std::function<DiffusionBatch(std::int64_t micro)>& next_batch, StepTimes& times);

// A step's loss and gradient norm on the host.
struct StepValues {
  double loss = 0, grad_norm = 0;
};

// The values of `results` in one device-to-host copy: the one point where the host waits for
// the device, once per window of steps instead of once per step.
std::vector<StepValues> read_step_values(const std::vector<StepResult>& results);

// Throws the Error that ends a diverged run, naming `step` (1-based), when `values` are not
// finite and the step was not skipped by fp16 loss scaling. The caller checks before anything
// built from the weights is written (checkpoints, validation images, the LoRA).
void check_step_finite(std::int64_t step, const StepResult& result, const StepValues& values);

}  // namespace sdxl::train
