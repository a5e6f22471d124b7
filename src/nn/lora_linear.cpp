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
  const auto dtype = x.scalar_type();
  torch::Tensor y;
  if (dropout_active()) {
    y = adapt(F::linear(x2, weight), x2);
    if (bias.defined()) y.add_(bias);
  } else if (has_dora()) {
    const torch::Tensor a = F::linear(x2, lora_A_as(dtype));
    const DoraFactors f = dora_factors();
    y = F::linear(x2, weight) * f.base.to(dtype);
    y.addmm_(a, (lora_B_as(dtype) * f.adapter.to(dtype).unsqueeze(1)).t(), /*beta=*/1.0,
             /*alpha=*/alpha_ / static_cast<double>(rank_));
    if (bias.defined()) y.add_(bias);
  } else {
    y = F::linear(x2, weight, bias);
    add_lora_(y, F::linear(x2, lora_A_as(dtype)));
  }
  auto shape = x.sizes().vec();
  shape.back() = out_;
  return y.view(shape);
}

torch::Tensor LoraCompatibleLinearImpl::dora_weight_norm() const {
  namespace F = torch::nn::functional;
  torch::NoGradGuard no_grad;
  // ‖W + s·B A‖² per row = ‖W‖² + 2s·Σ_k B ⊙ (W Aᵀ) + s²·Σ_k (B·A Aᵀ) ⊙ B: two GEMMs of rank
  // width instead of an [out, in] float32 product per step.
  const double s = alpha_ / static_cast<double>(rank_);
  const torch::Tensor& A = lora_A->weight;
  const torch::Tensor& B = lora_B->weight;
  const torch::Tensor w_at = F::linear(A.to(weight.scalar_type()), weight).to(torch::kFloat).t();  // W Aᵀ
  const torch::Tensor sq = weight_sq_norm_ + 2.0 * s * (B * w_at).sum(1) + s * s * (B.mm(A.mm(A.t())) * B).sum(1);
  return sq.clamp_min(0.0).sqrt();
}

LoraCompatibleLinearImpl::DoraFactors LoraCompatibleLinearImpl::dora_factors() const {
  const torch::Tensor g = lora_magnitude / dora_weight_norm();
  if (lora_scale == 1.0) return {g, g};
  return {g * lora_scale + (1.0 - lora_scale), g * lora_scale};
}

void LoraCompatibleLinearImpl::add_dora() {
  if (!has_lora()) throw Error("internal: DoRA needs a LoRA adapter first");
  torch::NoGradGuard no_grad;
  weight_sq_norm_ = weight.detach().to(torch::kFloat).pow(2).sum(1);
  // A holder module, so that the magnitude is one of this layer's parameters (gradient
  // checkpointing finds the trainable ones that way) and leaves with remove_lora.
  auto holder = std::make_shared<torch::nn::Module>();
  lora_magnitude = holder->register_parameter("weight", dora_weight_norm());
  register_module("lora_magnitude_vector", holder);
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

torch::Tensor LoraCompatibleLinearImpl::adapt(const torch::Tensor& wx, const torch::Tensor& x) const {
  namespace F = torch::nn::functional;
  if (!has_lora() || lora_scale == 0.0) return wx;
  const auto dtype = x.scalar_type();
  const torch::Tensor xd = dropout_active() ? F::dropout(x, F::DropoutFuncOptions().p(lora_dropout).training(true)) : x;
  const torch::Tensor a = F::linear(xd, lora_A_as(dtype));
  if (!has_dora()) return wx + F::linear(a, lora_B_as(dtype)) * lora_scaling();
  const DoraFactors f = dora_factors();
  const torch::Tensor delta =
      F::linear(a, lora_B_as(dtype) * f.adapter.to(dtype).unsqueeze(1)) * (alpha_ / static_cast<double>(rank_));
  if (!xd.is_same(x)) {
    // peft applies DoRA's (g - 1) ⊙ W term to the dropped-out input too.
    return wx + F::linear(xd, weight) * (f.base - 1.0).to(dtype) + delta;
  }
  return wx * f.base.to(dtype) + delta;
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
  if (has_dora()) unregister_module("lora_magnitude_vector");
  lora_magnitude = torch::Tensor();
  weight_sq_norm_ = torch::Tensor();
  lora_A = nullptr;
  lora_B = nullptr;
  rank_ = 0;
  alpha_ = 0.0;
}

void LoraCompatibleLinearImpl::merge_lora(double scale) {
  if (!has_lora()) return;
  torch::NoGradGuard no_grad;
  const double s = alpha_ / static_cast<double>(rank_);
  const torch::Tensor w = weight.to(torch::kFloat);
  const torch::Tensor delta = torch::matmul(lora_B->weight, lora_A->weight).to(weight.device());
  torch::Tensor merged;
  if (has_dora()) {
    const torch::Tensor tuned = (w + s * delta) * (lora_magnitude / dora_weight_norm()).unsqueeze(1);
    merged = w + scale * (tuned - w);
  } else {
    merged = w + (scale * s) * delta;
  }
  weight.copy_(merged.to(weight.scalar_type()));
  remove_lora();
}

}  // namespace sdxl::nn
