#include "sdxl_dreambooth/train/training_setup.h"

#include "sdxl_dreambooth/build_features.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/nn/geglu_product.h"

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

void configure_cudnn(const config::TrainConfig& train) {
  at::globalContext().setBenchmarkCuDNN(train.cudnn_benchmark);
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
  const std::string& mp = train.mixed_precision;
  if (mp == "bf16") return torch::kBFloat16;
  if (mp == "fp16") {
    if (!device.is_cuda()) {
      throw UsageError("train.mixed_precision = \"fp16\" needs a CUDA device; on CPU use \"bf16\" or \"no\"");
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

LossOptions loss_options(const config::TrainConfig& train, const config::PriorConfig& prior,
                         const std::string& scheduler_prediction_type) {
  LossOptions lo;
  lo.prediction_type = train.prediction_type.value_or(scheduler_prediction_type);
  lo.snr_gamma = train.snr_gamma;
  lo.with_prior = prior.enabled;
  lo.prior_loss_weight = prior.loss_weight;
  return lo;
}

}  // namespace sdxl::train
