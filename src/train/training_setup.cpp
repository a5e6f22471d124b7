#include "sdxl_dreambooth/train/training_setup.h"

#include "sdxl_dreambooth/build_features.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/nn/geglu_product.h"
#include "sdxl_dreambooth/train/prodigy.h"
#include "sdxl_dreambooth/util/strings.h"

namespace sdxl::train {

torch::Device training_device(const config::TrainConfig& train, int local_rank) {
  const std::string& dev = train.device;
  if (dev == "cpu" || (dev == "auto" && !torch::cuda::is_available())) return torch::kCPU;
  if (!torch::cuda::is_available()) {
    const BuildFeatures features = build_features();
    throw UsageError("train.device = \"cuda\", but no GPU is visible to this process (this build: " +
                         std::string(features.torch_cuda_built ? "CUDA" : "CPU-only") + " LibTorch)",
                     "set train.device = \"cpu\" (or \"auto\": CUDA when a GPU is visible), or run where a GPU is "
                     "visible (sbatch --gpus-per-task=1; CUDA_VISIBLE_DEVICES)");
  }
  const auto count = static_cast<int>(torch::cuda::device_count());
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank % count));
}

void configure_cuda_math(const config::TrainConfig& train) {
  at::globalContext().setBenchmarkCuDNN(train.cudnn_benchmark);
  // PyTorch's defaults are TF32 off for matmuls, on for cuDNN; allow_tf32 turns both on.
  at::globalContext().setAllowTF32CuBLAS(train.allow_tf32);
  if (train.allow_tf32) at::globalContext().setAllowTF32CuDNN(true);
}

bool fuse_projections(const config::TrainConfig& train, const torch::Device& device) {
  return train.fuse_projections.value_or(device.is_cuda());
}

bool cuda_graphs(const config::TrainConfig& train, const config::LoraConfig& lora, const torch::Device& device) {
  if (!train.cuda_graphs) return false;
  if (train.mixed_precision == "fp16") {
    throw UsageError("train.cuda_graphs = true does not work with train.mixed_precision = \"fp16\": its loss scale "
                     "changes between steps, and a recorded step would keep the first one; use \"bf16\"");
  }
  if (lora.train_text_encoder) {
    throw UsageError("train.cuda_graphs = true does not work with lora.train_text_encoder = true: the text "
                     "encoders run outside the recorded pass; set one of them to false");
  }
  if (lora.dropout > 0) {
    throw UsageError("train.cuda_graphs = true does not work with lora.dropout > 0: a recorded step would replay "
                     "the first step's dropout masks; set lora.dropout = 0 or train.cuda_graphs = false");
  }
  return device.is_cuda();
}

bool fused_kernels(const config::TrainConfig& train, const torch::Device& device) {
  if (!train.fused_kernels || !device.is_cuda()) return false;
  if (!nn::geglu_kernels_built()) {
    throw UsageError("train.fused_kernels = true: this build has no fused kernels (CMake found no CUDA compiler "
                     "when it was configured); set it to false, or rebuild with nvcc on the PATH or CUDACXX set");
  }
  return true;
}

torch::Dtype training_dtype(const config::TrainConfig& train, const torch::Device& device) {
  return precision_dtype(train.mixed_precision, device, "train.mixed_precision");
}

torch::Dtype precision_dtype(const std::string& precision, const torch::Device& device, const std::string& key) {
  if (precision == "bf16") return torch::kBFloat16;
  if (precision == "fp16") {
    if (!device.is_cuda()) {
      throw UsageError(key + " = \"fp16\" needs a CUDA device; on CPU use \"bf16\" or full precision");
    }
    return torch::kHalf;
  }
  return torch::kFloat;
}

pipeline::PipelineOptions base_model_options(const config::ModelConfig& model, torch::Dtype dtype,
                                             const torch::Device& device) {
  pipeline::PipelineOptions po;
  po.model = model.pretrained;
  po.vae = model.vae;
  po.variant = model.variant;
  po.revision = model.revision;
  po.dtype = dtype;
  po.vae_dtype = torch::kFloat;
  po.device = device;
  return po;
}

nn::LoraSpec lora_spec(const config::LoraConfig& lora) {
  nn::LoraSpec spec;
  spec.rank = lora.rank;
  spec.alpha = lora.alpha.value_or(static_cast<double>(spec.rank));
  spec.targets = lora.targets;
  if (lora.preset) {
    spec.targets = {"to_q", "to_k", "to_v", "to_out.0"};
    // kohya's networks.lora: every Linear inside SDXL's transformer blocks.
    if (*lora.preset != "attention") {
      spec.targets.insert(spec.targets.end(), {"proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"});
    }
    // ... with conv_dim (LoCon): every Conv2d and Linear of the ResnetBlock2D, Downsample2D and
    // Upsample2D modules too.
    if (*lora.preset == "kohya_conv") {
      spec.targets.insert(spec.targets.end(), {"conv1", "conv2", "conv_shortcut", "time_emb_proj",
                                               "downsamplers.0.conv", "upsamplers.0.conv"});
    }
  }
  spec.preset = lora.preset.has_value();
  spec.conv_rank = lora.conv_rank.value_or(spec.rank);
  spec.conv_alpha = lora.conv_alpha.value_or(static_cast<double>(spec.conv_rank));
  spec.blocks = lora.blocks.value_or(std::vector<std::string>{});
  spec.dora = lora.use_dora;
  spec.dropout = lora.dropout;
  return spec;
}

AdamWOptions adamw_options(const config::OptimizerConfig& optimizer) {
  AdamWOptions ao;
  ao.beta1 = optimizer.beta1;
  ao.beta2 = optimizer.beta2;
  ao.eps = optimizer.eps;
  ao.weight_decay = optimizer.weight_decay;
  return ao;
}

bool edm_style(const config::TrainConfig& train, const model::SchedulerConfig& scheduler) {
  return train.edm_style || scheduler.edm();
}

void check_scheduler_fits(const config::TrainConfig& train, const model::SchedulerConfig& scheduler,
                          const std::string& model) {
  if (scheduler.edm() && train.snr_gamma) {
    throw UsageError("train.snr_gamma does not apply to " + model + ": its scheduler " + scheduler.class_name +
                         " makes the run EDM-style, which has no SNR weighting",
                     "remove train.snr_gamma");
  }
  if (scheduler.edm() && train.loss != "l2") {
    throw UsageError("train.loss = " + util::quoted(train.loss) + " does not apply to " + model + ": its scheduler " +
                         scheduler.class_name + " makes the run EDM-style, which takes train.loss = \"l2\"",
                     "set train.loss = \"l2\"");
  }
  const std::int64_t steps = scheduler.num_train_timesteps;
  if (train.max_timestep.value_or(steps) > steps || train.min_timestep >= train.max_timestep.value_or(steps)) {
    throw UsageError("train.min_timestep = " + std::to_string(train.min_timestep) + " and train.max_timestep = " +
                     (train.max_timestep ? std::to_string(*train.max_timestep) : std::string("unset")) +
                     " must satisfy 0 <= min < max <= " + std::to_string(steps) + ", the num_train_timesteps of " +
                     model + "'s scheduler");
  }
}

std::unique_ptr<Optimizer> make_optimizer(const config::OptimizerConfig& optimizer, std::vector<ParamGroup> groups) {
  if (optimizer.kind != "prodigy") return std::make_unique<AdamWGroups>(std::move(groups), adamw_options(optimizer));
  ProdigyOptions po;
  po.beta1 = optimizer.beta1;
  po.beta2 = optimizer.beta2;
  po.beta3 = optimizer.prodigy_beta3;
  po.eps = optimizer.eps;
  po.decouple = optimizer.prodigy_decouple;
  po.use_bias_correction = optimizer.prodigy_use_bias_correction;
  po.safeguard_warmup = optimizer.prodigy_safeguard_warmup;
  po.d0 = optimizer.prodigy_d0;
  po.d_coef = optimizer.prodigy_d_coef;
  if (optimizer.prodigy_growth_rate) po.growth_rate = *optimizer.prodigy_growth_rate;
  return std::make_unique<Prodigy>(std::move(groups), po);
}

std::string optimizer_type(const config::OptimizerConfig& optimizer) {
  return optimizer.kind == "prodigy" ? "Prodigy" : "AdamW";
}

LossOptions loss_options(const config::TrainConfig& train, const config::PriorConfig& prior,
                         const std::string& scheduler_prediction_type) {
  LossOptions lo;
  lo.prediction_type = train.prediction_type.value_or(scheduler_prediction_type);
  lo.snr_gamma = train.snr_gamma;
  lo.with_prior = prior.enabled;
  lo.prior_loss_weight = prior.loss_weight;
  lo.loss = train.loss;
  lo.huber_c = train.huber_c;
  lo.huber_schedule = train.huber_schedule;
  return lo;
}

}  // namespace sdxl::train
