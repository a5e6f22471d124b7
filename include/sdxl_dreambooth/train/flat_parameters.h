// Parameters moved into one contiguous buffer, each becoming a view of it (as apex/DeepSpeed
// flatten parameters): an optimizer then updates them with a few element-wise operations over
// the buffer instead of a few per tensor, and nn::AdapterCast casts them with one.
#pragma once

#include <torch/torch.h>

#include <vector>

namespace sdxl::train {

// Moves `params` into one buffer (modules holding them see the same tensors) and returns it;
// undefined, with nothing moved, when they differ in dtype or device or one is not contiguous.
torch::Tensor flatten_parameters(const std::vector<torch::Tensor>& params);

// Views of `flat` shaped like `params`, in order.
std::vector<torch::Tensor> views_of(const torch::Tensor& flat, const std::vector<torch::Tensor>& params);

}  // namespace sdxl::train
