#include "sdxl_dreambooth/nn/adapter_cast.h"

#include "sdxl_dreambooth/util/adjacent_tensors.h"

namespace sdxl::nn {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// All parameters in `dtype` as one 1-D tensor. The cast reads their shared storage directly;
// backward casts the one incoming gradient to float32 and hands each parameter its slice.
struct FlatCast : public torch::autograd::Function<FlatCast> {
  static torch::Tensor forward(AutogradContext* ctx, at::TensorList params, torch::Tensor storage,
                               std::int64_t dtype) {
    std::vector<std::int64_t> sizes;
    std::vector<std::int64_t> dims;
    for (const auto& p : params) {
      sizes.push_back(p.numel());
      dims.push_back(p.dim());
      for (std::int64_t d = 0; d < p.dim(); ++d) sizes.push_back(p.size(d));
    }
    ctx->saved_data["sizes"] = sizes;
    ctx->saved_data["dims"] = dims;
    ctx->saved_data["dtype"] = static_cast<std::int64_t>(storage.scalar_type());
    return storage.to(static_cast<torch::ScalarType>(dtype));
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto sizes = ctx->saved_data["sizes"].toIntVector();
    const auto dims = ctx->saved_data["dims"].toIntVector();
    const auto dtype = static_cast<torch::ScalarType>(ctx->saved_data["dtype"].toInt());
    variable_list out;
    if (!grads[0].defined()) {
      out.resize(dims.size() + 2);
      return out;
    }
    const torch::Tensor g = grads[0].to(dtype);
    std::size_t k = 0;
    std::int64_t offset = 0;
    for (const std::int64_t dim : dims) {
      const std::int64_t numel = sizes[k++];
      std::vector<std::int64_t> shape(sizes.begin() + static_cast<std::ptrdiff_t>(k),
                                      sizes.begin() + static_cast<std::ptrdiff_t>(k + static_cast<std::size_t>(dim)));
      k += static_cast<std::size_t>(dim);
      out.push_back(g.narrow(0, offset, numel).view(shape));
      offset += numel;
    }
    out.emplace_back();  // storage: reached through the parameters
    out.emplace_back();  // dtype
    return out;
  }
};

}  // namespace

std::vector<torch::Tensor> cast_together(const std::vector<torch::Tensor>& params, torch::ScalarType dtype) {
  if (params.empty()) return {};
  const torch::Tensor storage = util::adjacent_tensors(params);
  if (!storage.defined() || storage.scalar_type() == dtype) return {};
  std::vector<std::int64_t> numels;
  for (const auto& p : params) numels.push_back(p.numel());
  const torch::Tensor flat = FlatCast::apply(at::TensorList(params), storage, static_cast<std::int64_t>(dtype));
  std::vector<torch::Tensor> parts = flat.split_with_sizes(numels);
  for (std::size_t i = 0; i < parts.size(); ++i) parts[i] = parts[i].view(params[i].sizes());
  return parts;
}

AdapterCast::AdapterCast(const LoraNetwork& network, torch::ScalarType dtype) {
  const std::vector<torch::Tensor> cast = cast_together(network.parameters(), dtype);
  if (cast.empty()) return;
  modules_ = network.modules();
  const std::size_t per_module = network.params_per_module();  // A, B (and DoRA's magnitude, used in float32)
  for (std::size_t i = 0; i < modules_.size(); ++i) {
    modules_[i]->cast_A = cast[per_module * i];
    modules_[i]->cast_B = cast[per_module * i + 1];
  }
  // LoCon's convolutions follow the linear layers, two tensors each.
  conv_modules_ = network.conv_modules();
  const std::size_t first_conv = per_module * modules_.size();
  for (std::size_t i = 0; i < conv_modules_.size(); ++i) {
    conv_modules_[i]->cast_A = cast[first_conv + 2 * i];
    conv_modules_[i]->cast_B = cast[first_conv + 2 * i + 1];
  }
}

AdapterCast::~AdapterCast() {
  for (auto& m : modules_) {
    m->cast_A = torch::Tensor();
    m->cast_B = torch::Tensor();
  }
  for (auto& m : conv_modules_) {
    m->cast_A = torch::Tensor();
    m->cast_B = torch::Tensor();
  }
}

}  // namespace sdxl::nn
