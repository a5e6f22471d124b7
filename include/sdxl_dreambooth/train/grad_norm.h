// Gradient norm and clipping over a parameter set: torch.nn.utils.clip_grad_norm_.
#pragma once

#include <torch/torch.h>

namespace sdxl::train {

// Scales a flat gradient (gradient_sync.h's flatten_gradients) in place by
// min(1, max_norm / (norm + 1e-6)), the coefficient of torch.nn.utils.clip_grad_norm_, and
// returns the norm before clipping as a one-element float32 tensor on `flat`'s device (not read
// back, so the host need not wait); max_norm <= 0 disables clipping (the norm is still returned,
// for logging). One float32 norm over all values: PyTorch takes the norm of per-tensor norms,
// which agrees to ~1e-5 relative (LoRA parity test).
torch::Tensor clip_flat_grad_norm(torch::Tensor& flat, double max_norm);

}  // namespace sdxl::train
