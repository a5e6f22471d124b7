#include "sdxl_dreambooth/train/gradient_sync.h"

#include "sdxl_dreambooth/error.h"

namespace sdxl::train {

double average_gradients(const std::vector<torch::Tensor>& params, double loss, dist::Collectives& comm) {
  torch::NoGradGuard no_grad;
  // One flat float32 buffer where the backend wants it (host for MPI, the GPU for NCCL).
  const auto opts = torch::TensorOptions().dtype(torch::kFloat).device(comm.device());
  std::vector<torch::Tensor> parts;
  for (const auto& p : params) {
    parts.push_back(p.grad().defined() ? p.grad().reshape({-1}).to(opts) : torch::zeros({p.numel()}, opts));
  }
  parts.push_back(torch::tensor({static_cast<float>(loss)}).to(opts));
  torch::Tensor flat = torch::cat(parts);
  comm.all_reduce_sum(flat, "all-reduce of LoRA gradients");
  flat.div_(static_cast<double>(comm.world_size()));
  std::int64_t offset = 0;
  for (const auto& p : params) {
    const torch::Tensor g = flat.slice(0, offset, offset + p.numel()).view(p.sizes()).to(p.device());
    if (p.grad().defined()) {
      p.mutable_grad().copy_(g);
    } else {
      p.mutable_grad() = g.to(p.device(), p.scalar_type()).clone();
    }
    offset += p.numel();
  }
  return flat[offset].item<double>();
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
