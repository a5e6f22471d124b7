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

torch::Tensor average_flat_gradient(torch::Tensor& flat, const torch::Tensor& loss, dist::DeviceCollectives& comm) {
  torch::NoGradGuard no_grad;
  // One buffer on the training device: the gradients, then the loss.
  const std::int64_t n = flat.numel();
  dist::DeviceBuffer buffer = comm.buffer(n + 1, torch::kFloat);
  const torch::Tensor& b = buffer.tensor();
  b.narrow(0, 0, n).copy_(flat);
  b.narrow(0, n, 1).copy_(loss.detach().reshape({1}));
  comm.all_reduce_sum(buffer, "all-reduce of LoRA gradients");
  b.div_(static_cast<double>(comm.world_size()));
  flat.copy_(b.narrow(0, 0, n));
  return b.narrow(0, n, 1).reshape({}).to(flat.device());
}

void warm_up_gradient_all_reduce(const std::vector<torch::Tensor>& params, dist::DeviceCollectives& comm) {
  std::int64_t n = 1;  // + the loss
  for (const auto& p : params) n += p.numel();
  dist::DeviceBuffer buffer = comm.buffer(n, torch::kFloat);
  comm.all_reduce_sum(buffer, "warm-up all-reduce of the gradients' size");
}

std::vector<bool> agree_on_gradients(const std::vector<bool>& has_grad, bool& stop_requested,
                                     dist::HostCollectives& comm) {
  std::vector<std::uint8_t> flags(has_grad.size() + 1);
  flags[0] = stop_requested ? 1 : 0;
  for (std::size_t i = 0; i < has_grad.size(); ++i) flags[i + 1] = has_grad[i] ? 1 : 0;
  comm.all_reduce_max(flags, "preemption flag and gradient mask");
  stop_requested = flags[0] != 0;
  std::vector<bool> any(has_grad.size());
  for (std::size_t i = 0; i < any.size(); ++i) any[i] = flags[i + 1] != 0;
  return any;
}

std::uint64_t weights_hash(const std::vector<torch::Tensor>& params) {
  torch::NoGradGuard no_grad;
  if (params.empty()) return 0;
  std::vector<torch::Tensor> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p.detach());
  torch::Tensor flat = util::adjacent_tensors(values);
  if (!flat.defined() || flat.scalar_type() != torch::kFloat) {
    std::vector<torch::Tensor> parts;
    parts.reserve(values.size());
    for (const auto& v : values) parts.push_back(v.reshape({-1}).to(torch::kFloat));
    flat = torch::cat(parts);
  }
  // The float32 bits as integers; two sums, one weighted by position, exact modulo 2^64 in any
  // order: the same bytes give the same hash on every device, a changed or moved value another.
  const torch::Tensor bits = flat.view(torch::kInt).to(torch::kLong).bitwise_and(static_cast<std::int64_t>(0xffffffff));
  const torch::Tensor position = torch::arange(1, 2 * flat.numel() + 1, 2, bits.options());
  const torch::Tensor sums = torch::stack({bits.sum(), (bits * position).sum()}).to(torch::kCPU);
  const auto* h = sums.data_ptr<std::int64_t>();
  return static_cast<std::uint64_t>(h[0]) * 0x9E3779B97F4A7C15ull ^ static_cast<std::uint64_t>(h[1]);
}

void check_weights_agree(const std::vector<torch::Tensor>& params, dist::HostCollectives& comm, std::int64_t step) {
  if (!comm.all_equal(weights_hash(params), "weight check")) {
    throw Error("rank " + std::to_string(comm.rank()) + ": the ranks' trained weights differ at step " +
                    std::to_string(step) + " (they must be identical after every step)",
                "a rank ran different code or data; check that every rank uses the same binary and config");
  }
}

}  // namespace sdxl::train
