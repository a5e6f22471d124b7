#include "sdxl_dreambooth/train/grad_norm.h"

namespace sdxl::train {

torch::Tensor total_grad_norm(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> norms;
  for (const auto& p : params) {
    if (p.grad().defined()) norms.push_back(p.grad().detach().to(torch::kFloat).norm(2));
  }
  if (norms.empty()) return torch::zeros({}, torch::kFloat);
  return torch::stack(norms).norm(2);
}

double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm) {
  torch::NoGradGuard no_grad;
  const torch::Tensor norm = total_grad_norm(params);
  const double value = norm.item<double>();
  if (max_norm > 0.0) {
    // ref: torch/nn/utils/clip_grad.py: the coefficient is a float32 tensor clamped at 1.
    const torch::Tensor coef = torch::clamp_max(max_norm / (norm + 1e-6), 1.0);
    for (const auto& p : params) {
      if (p.grad().defined()) p.grad().detach().mul_(coef.to(p.grad().device(), p.grad().scalar_type()));
    }
  }
  return value;
}

double clip_flat_grad_norm(torch::Tensor& flat, double max_norm) {
  torch::NoGradGuard no_grad;
  const torch::Tensor norm = flat.norm(2);
  const double value = norm.item<double>();
  if (max_norm > 0.0) flat.mul_(torch::clamp_max(max_norm / (norm + 1e-6), 1.0));
  return value;
}

}  // namespace sdxl::train
