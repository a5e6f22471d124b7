#include "sdxl_dreambooth/train/flat_parameters.h"

namespace sdxl::train {

torch::Tensor flatten_parameters(const std::vector<torch::Tensor>& params) {
  if (params.empty()) return {};
  for (const auto& p : params) {
    if (p.scalar_type() != params[0].scalar_type() || p.device() != params[0].device() || !p.is_contiguous() ||
        p.is_sparse()) {
      return {};
    }
  }
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> parts;
  for (const auto& p : params) parts.push_back(p.detach().reshape({-1}));
  torch::Tensor flat = torch::cat(parts);
  const auto views = views_of(flat, params);
  for (std::size_t i = 0; i < params.size(); ++i) {
    torch::Tensor p = params[i];
    p.set_data(views[i]);
  }
  return flat;
}

std::vector<torch::Tensor> views_of(const torch::Tensor& flat, const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> out;
  std::int64_t offset = 0;
  for (const auto& p : params) {
    out.push_back(flat.narrow(0, offset, p.numel()).view(p.sizes()));
    offset += p.numel();
  }
  return out;
}

}  // namespace sdxl::train
