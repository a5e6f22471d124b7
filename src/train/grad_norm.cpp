#include "sdxl_dreambooth/train/grad_norm.h"

namespace sdxl::train {

torch::Tensor clip_flat_grad_norm(torch::Tensor& flat, double max_norm) {
  torch::NoGradGuard no_grad;
  const torch::Tensor norm = flat.norm(2);
  if (max_norm > 0.0) flat.mul_(torch::clamp_max(max_norm / (norm + 1e-6), 1.0));
  return norm;
}

}  // namespace sdxl::train
