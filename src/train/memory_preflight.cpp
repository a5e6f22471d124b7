#include "sdxl_dreambooth/train/memory_preflight.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/pipeline/activation_memory.h"
#include "sdxl_dreambooth/torch_compat.h"
#include "sdxl_dreambooth/util/memory_usage.h"
#include "sdxl_dreambooth/util/strings.h"

namespace sdxl::train {
namespace {

double parameter_bytes(const torch::nn::Module& m) {
  double bytes = 0;
  for (const auto& p : m.parameters()) bytes += static_cast<double>(p.numel() * p.element_size());
  return bytes;
}

std::string gib(double bytes) { return util::format_with("%.1f", bytes / (1024.0 * 1024.0 * 1024.0)) + " GiB"; }

}  // namespace

StepMemoryBound step_memory_lower_bound(const pipeline::SdxlPipeline& pipe, const config::TrainConfig& train,
                                        const RunSettings& s) {
  StepMemoryBound b;
  b.weights_bytes = parameter_bytes(*pipe.unet) + parameter_bytes(*pipe.vae);
  if (!pipe.text_encoder.is_empty()) b.weights_bytes += parameter_bytes(*pipe.text_encoder);
  if (!pipe.text_encoder_2.is_empty()) b.weights_bytes += parameter_bytes(*pipe.text_encoder_2);
  pipeline::AttentionCost attention;
  attention.scores_materialized = false;  // a lower bound: as if every attention were fused
  b.rows = train.batch_size * (s.prior ? 2 : 1);
  b.activation_bytes = static_cast<double>(b.rows) *
                       pipeline::unet_forward_bytes_per_sample(pipe.unet->config(), s.resolution, s.resolution,
                                                               s.dtype, attention);
  return b;
}

void check_step_fits(const pipeline::SdxlPipeline& pipe, const config::TrainConfig& train, const RunSettings& s,
                     dist::HostCollectives& comm) {
  const StepMemoryBound b = step_memory_lower_bound(pipe, train, s);
  // CUDA: the device's whole memory; CPU: what the node has free now (the weights are loaded).
  const double device = s.device.is_cuda() ? compat::cuda_total_memory(s.device.index())
                                           : static_cast<double>(util::available_memory_bytes()) + b.weights_bytes;
  const bool fits = device <= 0 || b.total() <= device;
  if (comm.all_reduce_max(fits ? 0.0 : 1.0, "step memory check") == 0) return;
  throw UsageError("train.batch_size = " + std::to_string(train.batch_size) + ": one micro-batch (" +
                       std::to_string(b.rows) + " UNet rows at " + std::to_string(s.resolution) + " px) needs at least " +
                       gib(b.total()) + " (weights " + gib(b.weights_bytes) + ", activations at least " +
                       gib(b.activation_bytes) + ")" +
                       (device > 0 && !fits ? ", more than this rank's " + std::string(s.device.is_cuda() ? "GPU" : "host") +
                                                  " has (" + gib(device) + ")"
                                            : ", more than some rank's device has"),
                   "lower train.batch_size (train.grad_accum keeps the effective batch), lower data.resolution, or "
                   "train on a device with more memory");
}

}  // namespace sdxl::train
