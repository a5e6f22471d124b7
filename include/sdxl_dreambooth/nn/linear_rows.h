// A linear layer over the last dimension, computed as one 2-D product of [rows, features].
#pragma once

#include <torch/torch.h>

namespace sdxl::nn {

// F::linear(x, weight, bias) for x of any rank. The 2-D product puts the bias into the GEMM
// (addmm, cuBLASLt's bias epilogue). LibTorch 2.11 computed the UNet's 3-D inputs with a bias
// as a product plus a separate broadcast add_ in a strided kernel, measured on an H200 at 7.8 %
// of a batch-8 step's GPU time (docs/benchmarks.md).
torch::Tensor linear_rows(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias);

}  // namespace sdxl::nn
