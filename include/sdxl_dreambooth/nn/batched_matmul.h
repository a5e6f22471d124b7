// The batched matrix products of attention (q·kᵀ and probs·v) on the CPU, one BLAS call per
// matrix on the operands' own memory.
//
// LibTorch's CPU bmm loops over the batch through ATen: three `select`s, the addmm checks and
// the GEMM per matrix, after `matmul` has copied non-contiguous operands (attention's per-head
// views are) into a contiguous batch. At the tiny UNet's shapes ([16, 16, 16] by [16, 16, 77])
// that is 18–37 µs per product where the GEMMs themselves take 2–7 µs (docs/benchmarks.md).
// Here every matrix whose rows or columns are contiguous goes straight to the Fortran BLAS
// `sgemm` that LibTorch itself links, with its strides as the leading dimension, and the batch
// is split across LibTorch's intra-op threads. Backward is the same product of the saved views.
#pragma once

#include <torch/torch.h>

namespace sdxl::nn {

// torch::matmul(a, b) for a [..., n, k] and b [..., k, m] with the same leading dimensions.
// Float32 CPU tensors take the direct path above where LibTorch's BLAS exports sgemm_, the rest
// torch::matmul; values agree with torch::matmul's to rounding (the same GEMM kernel per
// matrix), gradients flow to both operands.
torch::Tensor batched_matmul(const torch::Tensor& a, const torch::Tensor& b);

// Whether batched_matmul takes the direct path for these operands (tests, benchmarks).
bool batched_matmul_is_direct(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace sdxl::nn
