// The settings `train` and `bench` read the same way from a config: where the step runs, the
// frozen weights' precision, the adapters, AdamW and the loss.
#pragma once

#include "sdxl_dreambooth/config/run_config.h"
#include "sdxl_dreambooth/nn/lora_network.h"
#include "sdxl_dreambooth/pipeline/sdxl_pipeline.h"
#include "sdxl_dreambooth/train/adamw.h"
#include "sdxl_dreambooth/train/diffusion_loss.h"
#include "sdxl_dreambooth/train/optimizer.h"

#include <torch/torch.h>

#include <memory>
#include <string>

namespace sdxl::train {

// train.device: cuda:(local_rank % device count) — also right when Slurm gives each task its
// own CUDA_VISIBLE_DEVICES — or cpu. A UsageError when cuda is asked for and not available.
torch::Device training_device(const config::TrainConfig& train, int local_rank);

// train.mixed_precision: float32, bfloat16 or float16 (CUDA only: a UsageError on the CPU).
torch::Dtype training_dtype(const config::TrainConfig& train, const torch::Device& device);
// "fp16", "bf16", else float32 ("no", "fp32"); fp16 off CUDA is a UsageError naming `key`.
torch::Dtype precision_dtype(const std::string& precision, const torch::Device& device, const std::string& key);

// Process-wide LibTorch settings of the CUDA math libraries (no effect without CUDA), set once
// before the first convolution: train.cudnn_benchmark (cuDNN's per-shape algorithm search) and
// train.allow_tf32 (TF32 in cuBLAS matmuls and cuDNN convolutions).
void configure_cuda_math(const config::TrainConfig& train);

// train.fuse_projections, by default on CUDA devices only (faster there, slower on CPUs:
// docs/benchmarks.md).
bool fuse_projections(const config::TrainConfig& train, const torch::Device& device);

// train.cuda_graphs on a CUDA device (ignored on the CPU, like train.cudnn_benchmark). A
// UsageError, on any device, with fp16, whose loss scale changes between steps while a graph
// would keep the one it recorded, and with lora.train_text_encoder, whose encoders run outside
// the recorded pass.
bool cuda_graphs(const config::TrainConfig& train, const config::LoraConfig& lora, const torch::Device& device);

// train.fused_kernels on a CUDA device (ignored on the CPU). A UsageError on a CUDA device when
// this build has no fused kernels (configured without a CUDA compiler).
bool fused_kernels(const config::TrainConfig& train, const torch::Device& device);

// The base pipeline of model.* in `dtype` on `device`; the VAE stays float32 (diffusers keeps
// it so: SDXL's VAE overflows in fp16).
pipeline::PipelineOptions base_model_options(const config::ModelConfig& model, torch::Dtype dtype,
                                             const torch::Device& device);

// lora.rank, lora.alpha (default: the rank), lora.targets.
nn::LoraSpec lora_spec(const config::LoraConfig& lora);

AdamWOptions adamw_options(const config::OptimizerConfig& optimizer);
// EDM-style training: train.edm_style, or by itself for an EDM base (scheduler class EDM*), as
// diffusers' script switches it on.
bool edm_style(const config::TrainConfig& train, const model::SchedulerConfig& scheduler);
// The base model's scheduler against the config: SNR-γ or a Huber loss with an EDM base, and
// timestep bounds outside its num_train_timesteps, are UsageErrors.
void check_scheduler_fits(const config::TrainConfig& train, const model::SchedulerConfig& scheduler,
                          const std::string& model);

// optimizer.kind's optimizer over `groups` (UNet first): AdamWGroups or Prodigy.
std::unique_ptr<Optimizer> make_optimizer(const config::OptimizerConfig& optimizer, std::vector<ParamGroup> groups);
// What the optimizer calls itself in checkpoints: "AdamW" or "Prodigy".
std::string optimizer_type(const config::OptimizerConfig& optimizer);

// train.prediction_type (default: the scheduler's), train.snr_gamma, prior.*.
LossOptions loss_options(const config::TrainConfig& train, const config::PriorConfig& prior,
                         const std::string& scheduler_prediction_type);

}  // namespace sdxl::train
