// Gradient norm and clipping over a parameter set: torch.nn.utils.clip_grad_norm_.
#pragma once

#include <torch/torch.h>

#include <vector>

namespace sdxl::train {

// L2 norm of all gradients together (float32 per-tensor norms, then their norm, as PyTorch).
// Parameters without a gradient are skipped. Returns a 0-dim float32 tensor.
torch::Tensor total_grad_norm(const std::vector<torch::Tensor>& params);

// Scales the gradients by min(1, max_norm / (norm + 1e-6)) and returns the norm before
// clipping. max_norm <= 0 disables clipping (the norm is still returned, for logging).
double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm);

// The same on a flat gradient (gradient_sync.h's flatten_gradients), in place: one norm and
// one multiply instead of two per parameter. Returns the norm before clipping.
double clip_flat_grad_norm(torch::Tensor& flat, double max_norm);

}  // namespace sdxl::train
