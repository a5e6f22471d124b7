#include "sdxl_dreambooth/train/gradient_sync.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/util/adjacent_tensors.h"

namespace sdxl::train {

namespace {

// The gradients as one tensor when they already lie side by side in one float32 buffer in
// parameter order, as nn::AdapterCast's backward leaves them; undefined otherwise.
torch::Tensor adjacent_gradients(const std::vector<torch::Tensor>& params, const torch::Device& device) {
  std::vector<torch::Tensor> grads;
  for (const auto& p : params) {
    const torch::Tensor& g = p.grad();
    if (!g.defined() || g.numel() != p.numel()) return {};
    grads.push_back(g);
  }
  const torch::Tensor flat = util::adjacent_tensors(grads);
  return flat.defined() && flat.scalar_type() == torch::kFloat && flat.device() == device ? flat : torch::Tensor();
}

}  // namespace

torch::Tensor flatten_gradients(const std::vector<torch::Tensor>& params, const torch::Device& device,
                                std::vector<bool>* has_grad) {
  torch::NoGradGuard no_grad;
  if (torch::Tensor flat = adjacent_gradients(params, device); flat.defined()) {
    if (has_grad) has_grad->assign(params.size(), true);
    return flat;
  }
  const auto opts = torch::TensorOptions().dtype(torch::kFloat).device(device);
  std::vector<torch::Tensor> parts;
  parts.reserve(params.size());
  if (has_grad) has_grad->assign(params.size(), false);
  for (std::size_t i = 0; i < params.size(); ++i) {
    const auto& p = params[i];
    const bool present = p.grad().defined();
    if (has_grad) (*has_grad)[i] = present;
    parts.push_back(present ? p.grad().reshape({-1}).to(opts) : torch::zeros({p.numel()}, opts));
  }
  if (parts.empty()) return torch::zeros({0}, opts);
  return torch::cat(parts);
}

torch::Tensor average_flat_gradient(torch::Tensor& flat, const torch::Tensor& loss, dist::Collectives& comm) {
  torch::NoGradGuard no_grad;
  // One buffer where the backend wants it (host for MPI, the GPU for NCCL).
  const auto opts = torch::TensorOptions().dtype(torch::kFloat).device(comm.device());
  const std::int64_t n = flat.numel();
  torch::Tensor buffer = torch::cat({flat.to(opts), loss.detach().reshape({1}).to(opts)});
  comm.all_reduce_sum(buffer, "all-reduce of LoRA gradients");
  buffer.div_(static_cast<double>(comm.world_size()));
  flat.copy_(buffer.narrow(0, 0, n));
  return buffer.narrow(0, n, 1).reshape({}).to(flat.device());
}

void check_weights_agree(const nn::LoraNetwork& lora, dist::Collectives& comm, std::int64_t step) {
  if (comm.world_size() == 1) return;
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a over the float32 bytes
  for (const auto& p : lora.parameters()) {
    const torch::Tensor t = p.detach().to(torch::kCPU, torch::kFloat).contiguous();
    const auto* b = static_cast<const unsigned char*>(t.data_ptr());
    for (std::int64_t i = 0; i < t.numel() * 4; ++i) h = (h ^ b[i]) * 1099511628211ull;
  }
  for (const double half : {double(h >> 32), double(h & 0xffffffffu)}) {
    if (comm.all_reduce_max(half, "LoRA weight check") != comm.all_reduce_min(half, "LoRA weight check")) {
      throw Error("rank " + std::to_string(comm.rank()) + ": the ranks' LoRA weights differ at step " +
                  std::to_string(step) + " (they must be identical after every step)",
                  "a rank ran different code or data; check that every rank uses the same binary and config");
    }
  }
}

}  // namespace sdxl::train
