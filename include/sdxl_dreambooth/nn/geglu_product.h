// The product of diffusers' GEGLU, a * gelu(gate), with a backward that keeps a and gate only.
#pragma once

#include <torch/torch.h>

namespace sdxl::nn {

// a * gelu(gate) (exact, erf-based gelu). Autograd's own backward of the composition keeps
// gelu(gate) as well as a and gate: a third tensor of the feed-forward's widest shape,
// [tokens, 4·dim], in each of SDXL's 70 transformer blocks. This one recomputes gelu(gate) in
// the backward instead, with the same values.
//
// fused_kernel: on CUDA, the forward and the backward are one kernel each (nn/geglu_kernel.cu)
// instead of ATen's two and four; only in builds that have them (geglu_kernels_built()).
// Without autograd (no input requires grad) it is the plain composition.
torch::Tensor geglu_product(const torch::Tensor& a, const torch::Tensor& gate, bool fused_kernel = false);

// Whether this build compiled the fused CUDA kernels (a CUDA LibTorch and a CUDA compiler).
bool geglu_kernels_built();

}  // namespace sdxl::nn
