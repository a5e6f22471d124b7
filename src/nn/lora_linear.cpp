#include "sdxl_dreambooth/nn/lora_linear.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/nn/linear_rows.h"

#include <cmath>

namespace sdxl::nn {

LoraCompatibleLinearImpl::LoraCompatibleLinearImpl(std::int64_t in_features, std::int64_t out_features, bool bias_)
    : in_(in_features), out_(out_features) {
  weight = register_parameter("weight", torch::empty({out_, in_}));
  // Same initialisation as torch.nn.Linear, for modules built without a checkpoint.
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias_) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(in_));
    bias = register_parameter("bias", torch::empty({out_}).uniform_(-bound, bound));
  }
}

torch::Tensor LoraCompatibleLinearImpl::forward(const torch::Tensor& x) {
  namespace F = torch::nn::functional;
  if (!has_lora() || lora_scale == 0.0) return linear_rows(x, weight, bias);
  // As rows: the adapter's B product then adds itself into the base output inside its GEMM
  // (addmm_, beta 1) instead of a separate pass over the output that adds a materialized delta.
  const torch::Tensor x2 = x.reshape({-1, in_});
  torch::Tensor y = F::linear(x2, weight, bias);
  add_lora_(y, F::linear(x2, lora_A_as(x.scalar_type())));
  auto shape = x.sizes().vec();
  shape.back() = out_;
  return y.view(shape);
}

torch::Tensor LoraCompatibleLinearImpl::lora_cast(const torch::Tensor& w, torch::ScalarType dtype) {
  // The adapter's float32 weights are cast to the activations' dtype (the casts' backward
  // returns float32 gradients): under mixed precision diffusers runs the adapter inside
  // autocast, which does the same. Casting the activations up instead moved every projection's
  // input and output through float32 three times, the largest avoidable cost of a bf16 step.
  return w.scalar_type() == dtype ? w : w.to(dtype);
}

torch::Tensor LoraCompatibleLinearImpl::lora_A_as(torch::ScalarType dtype) const {
  return cast_A.defined() && cast_A.scalar_type() == dtype ? cast_A : lora_cast(lora_A->weight, dtype);
}

torch::Tensor LoraCompatibleLinearImpl::lora_B_as(torch::ScalarType dtype) const {
  return cast_B.defined() && cast_B.scalar_type() == dtype ? cast_B : lora_cast(lora_B->weight, dtype);
}

void LoraCompatibleLinearImpl::add_lora_(torch::Tensor& y, const torch::Tensor& a) const {
  y.addmm_(a, lora_B_as(y.scalar_type()).t(), /*beta=*/1.0, /*alpha=*/lora_scaling());
}

torch::Tensor LoraCompatibleLinearImpl::lora_delta(const torch::Tensor& x) const {
  if (!has_lora() || lora_scale == 0.0) return {};
  const auto dtype = x.scalar_type();
  torch::Tensor delta = torch::nn::functional::linear(torch::nn::functional::linear(x, lora_A_as(dtype)),
                                                      lora_B_as(dtype));
  const double scaling = lora_scaling();
  return scaling != 1.0 ? delta * scaling : delta;
}

void LoraCompatibleLinearImpl::add_lora(std::int64_t rank, double alpha, at::Generator& generator) {
  if (rank < 1) throw Error("LoRA rank must be >= 1, got " + std::to_string(rank));
  if (has_lora()) remove_lora();
  rank_ = rank;
  alpha_ = alpha;
  const auto opts = torch::TensorOptions().dtype(torch::kFloat).device(weight.device());
  lora_A = register_module("lora_A", torch::nn::Linear(torch::nn::LinearOptions(in_, rank).bias(false)));
  lora_B = register_module("lora_B", torch::nn::Linear(torch::nn::LinearOptions(rank, out_).bias(false)));
  lora_A->to(opts.device(), torch::kFloat);
  lora_B->to(opts.device(), torch::kFloat);
  torch::NoGradGuard no_grad;
  // Drawn on the CPU so that the same seed gives the same adapter on every device.
  lora_A->weight.copy_(torch::empty({rank, in_}).normal_(0.0, 1.0 / static_cast<double>(rank), generator));
  lora_B->weight.zero_();
}

void LoraCompatibleLinearImpl::remove_lora() {
  if (!has_lora()) return;
  unregister_module("lora_A");
  unregister_module("lora_B");
  lora_A = nullptr;
  lora_B = nullptr;
  rank_ = 0;
  alpha_ = 0.0;
}

void LoraCompatibleLinearImpl::merge_lora(double scale) {
  if (!has_lora()) return;
  torch::NoGradGuard no_grad;
  const double scaling = scale * alpha_ / static_cast<double>(rank_);
  const torch::Tensor delta = torch::matmul(lora_B->weight, lora_A->weight) * scaling;
  weight.copy_((weight.to(torch::kFloat) + delta.to(weight.device())).to(weight.scalar_type()));
  remove_lora();
}

}  // namespace sdxl::nn
