// Tensors that lie side by side in one storage, in order: AdamW's flat buffer of the adapters,
// the gradients nn::AdapterCast's backward leaves, the fused attention projections' weights.
// Such a set is one tensor already, and can be used as one without a copy.
#pragma once

#include <torch/torch.h>

#include <vector>

namespace sdxl::util {

// The tensors as one 1-D view of their storage when each is contiguous and starts where the
// one before it ends, all of one dtype and device; undefined otherwise (or when empty).
torch::Tensor adjacent_tensors(const std::vector<torch::Tensor>& tensors);

}  // namespace sdxl::util
