#include "sdxl_dreambooth/nn/linear_rows.h"

namespace sdxl::nn {

torch::Tensor linear_rows(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  if (x.dim() == 2) return torch::nn::functional::linear(x, weight, bias);
  auto shape = x.sizes().vec();
  shape.back() = weight.size(0);
  return torch::nn::functional::linear(x.reshape({-1, x.size(-1)}), weight, bias).view(shape);
}

}  // namespace sdxl::nn
