#include "sdxl_dreambooth/train/training_setup.h"

#include "sdxl_dreambooth/build_features.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/nn/geglu_product.h"

namespace sdxl::train {

torch::Device training_device(const config::Config& cfg, int local_rank) {
  const std::string dev = cfg.get_string("train.device");
  if (dev == "cpu" || (dev == "auto" && !torch::cuda::is_available())) return torch::kCPU;
  if (!torch::cuda::is_available()) {
    const BuildFeatures features = build_features();
    throw UsageError("train.device = \"cuda\", but LibTorch sees no CUDA device (this build: " +
                     std::string(features.torch_cuda_built ? "CUDA" : "CPU-only") + " LibTorch)");
  }
  const auto count = static_cast<int>(torch::cuda::device_count());
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank % count));
}

void configure_cudnn(const config::Config& cfg) {
  at::globalContext().setBenchmarkCuDNN(cfg.get_bool("train.cudnn_benchmark"));
}

bool fuse_projections(const config::Config& cfg, const torch::Device& device) {
  return cfg.get_optional_bool("train.fuse_projections").value_or(device.is_cuda());
}

bool cuda_graphs(const config::Config& cfg, const torch::Device& device) {
  if (!cfg.get_bool("train.cuda_graphs")) return false;
  if (cfg.get_string("train.mixed_precision") == "fp16") {
    throw UsageError("train.cuda_graphs = true does not work with train.mixed_precision = \"fp16\": its loss scale "
                     "changes between steps, and a recorded step would keep the first one; use \"bf16\"");
  }
  if (cfg.get_bool("lora.train_text_encoder")) {
    throw UsageError("train.cuda_graphs = true does not work with lora.train_text_encoder = true: the text "
                     "encoders run outside the recorded pass; set one of them to false");
  }
  return device.is_cuda();
}

bool fused_kernels(const config::Config& cfg, const torch::Device& device) {
  if (!cfg.get_bool("train.fused_kernels") || !device.is_cuda()) return false;
  if (!nn::geglu_kernels_built()) {
    throw UsageError("train.fused_kernels = true: this build has no fused kernels (CMake found no CUDA compiler "
                     "when it was configured); set it to false, or rebuild with nvcc on the PATH or CUDACXX set");
  }
  return true;
}

torch::Dtype training_dtype(const config::Config& cfg, const torch::Device& device) {
  const std::string mp = cfg.get_string("train.mixed_precision");
  if (mp == "bf16") return torch::kBFloat16;
  if (mp == "fp16") {
    if (!device.is_cuda()) {
      throw UsageError("train.mixed_precision = \"fp16\" needs a CUDA device; on CPU use \"bf16\" or \"no\"");
    }
    return torch::kHalf;
  }
  return torch::kFloat;
}

nn::LoraSpec lora_spec(const config::Config& cfg) {
  nn::LoraSpec spec;
  spec.rank = cfg.get_int("lora.rank");
  spec.alpha = cfg.get_optional_float("lora.alpha").value_or(static_cast<double>(spec.rank));
  spec.targets = cfg.get_list("lora.targets");
  return spec;
}

AdamWOptions adamw_options(const config::Config& cfg) {
  AdamWOptions ao;
  ao.beta1 = cfg.get_float("optimizer.beta1");
  ao.beta2 = cfg.get_float("optimizer.beta2");
  ao.eps = cfg.get_float("optimizer.eps");
  ao.weight_decay = cfg.get_float("optimizer.weight_decay");
  return ao;
}

LossOptions loss_options(const config::Config& cfg, const std::string& scheduler_prediction_type) {
  LossOptions lo;
  lo.prediction_type = cfg.get_optional_string("train.prediction_type").value_or(scheduler_prediction_type);
  lo.snr_gamma = cfg.get_optional_float("train.snr_gamma");
  lo.with_prior = cfg.get_bool("prior.enabled");
  lo.prior_loss_weight = cfg.get_float("prior.loss_weight");
  return lo;
}

}  // namespace sdxl::train
