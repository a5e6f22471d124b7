#include "sdxl_dreambooth/nn/lora_conv.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/nn/lora_linear.h"

#include <cmath>

namespace sdxl::nn {

namespace F = torch::nn::functional;

LoraCompatibleConvImpl::LoraCompatibleConvImpl(const ConvShape& s, bool bias_) : shape_(s) {
  weight = register_parameter("weight", torch::empty({s.out, s.in, s.kernel, s.kernel}));
  // torch.nn.Conv2d's initialisation, for modules built without a checkpoint.
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias_) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(s.in * s.kernel * s.kernel));
    bias = register_parameter("bias", torch::empty({s.out}).uniform_(-bound, bound));
  }
}

torch::Tensor LoraCompatibleConvImpl::forward(const torch::Tensor& x) {
  const auto opts = F::Conv2dFuncOptions().stride(shape_.stride).padding(shape_.padding);
  torch::Tensor y = F::conv2d(x, weight, F::Conv2dFuncOptions(opts).bias(bias));
  if (!has_lora() || lora_scale == 0.0) return y;
  const auto dtype = x.scalar_type();
  const torch::Tensor a_w = cast_A.defined() && cast_A.scalar_type() == dtype
                                ? cast_A
                                : LoraCompatibleLinearImpl::lora_cast(lora_A->weight, dtype);
  const torch::Tensor b_w = cast_B.defined() && cast_B.scalar_type() == dtype
                                ? cast_B
                                : LoraCompatibleLinearImpl::lora_cast(lora_B->weight, dtype);
  const bool drop = lora_dropout > 0.0 && is_training();
  const torch::Tensor xd = drop ? F::dropout(x, F::DropoutFuncOptions().p(lora_dropout).training(true)) : x;
  const torch::Tensor a = F::conv2d(xd, a_w, opts);
  return y + F::conv2d(a, b_w) * lora_scaling();
}

void LoraCompatibleConvImpl::add_lora(std::int64_t rank, double alpha, at::Generator& generator) {
  if (rank < 1) throw Error("LoRA rank must be >= 1, got " + std::to_string(rank));
  if (has_lora()) remove_lora();
  rank_ = rank;
  alpha_ = alpha;
  const auto k = shape_.kernel;
  lora_A = register_module("lora_A", torch::nn::Conv2d(torch::nn::Conv2dOptions(shape_.in, rank, k)
                                                           .stride(shape_.stride)
                                                           .padding(shape_.padding)
                                                           .bias(false)));
  lora_B = register_module("lora_B", torch::nn::Conv2d(torch::nn::Conv2dOptions(rank, shape_.out, 1).bias(false)));
  lora_A->to(weight.device(), torch::kFloat);
  lora_B->to(weight.device(), torch::kFloat);
  torch::NoGradGuard no_grad;
  lora_A->weight.copy_(
      torch::empty({rank, shape_.in, k, k}).normal_(0.0, 1.0 / static_cast<double>(rank), generator));
  lora_B->weight.zero_();
}

void LoraCompatibleConvImpl::remove_lora() {
  if (!has_lora()) return;
  unregister_module("lora_A");
  unregister_module("lora_B");
  lora_A = nullptr;
  lora_B = nullptr;
  rank_ = 0;
  alpha_ = 0.0;
}

void LoraCompatibleConvImpl::merge_lora(double scale) {
  if (!has_lora()) return;
  torch::NoGradGuard no_grad;
  // A 1x1 conv after a k x k one is one k x k conv with kernel B·A (summed over the rank).
  const torch::Tensor a = lora_A->weight.reshape({rank_, -1});
  const torch::Tensor b = lora_B->weight.reshape({shape_.out, rank_});
  const torch::Tensor delta = b.mm(a).view(weight.sizes()).to(weight.device());
  const double s = scale * alpha_ / static_cast<double>(rank_);
  weight.copy_((weight.to(torch::kFloat) + s * delta).to(weight.scalar_type()));
  remove_lora();
}

}  // namespace sdxl::nn
