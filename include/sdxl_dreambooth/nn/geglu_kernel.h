// GEGLU's product a * gelu(gate) and its gradient as one CUDA kernel each (src/nn/geglu_kernel.cu,
// compiled only when CMake finds a CUDA compiler for a CUDA build of LibTorch). The interface is
// free of LibTorch so that nvcc never parses its headers; nn/geglu_product is the caller.
#pragma once

#include <cstdint>

namespace sdxl::nn::kernels {

enum class ElementType { kFloat32, kFloat16, kBFloat16 };

// out = a * gelu(gate) over n contiguous elements, queued on `stream` (a cudaStream_t). The
// arithmetic is ATen's, rounding where ATen's two kernels round: gelu(gate) to the element
// type, then the product. Returns nullptr, or CUDA's message for a failed launch.
const char* geglu_forward(ElementType type, const void* a, const void* gate, void* out, std::int64_t n, void* stream);

// The gradients of out = a * gelu(gate): grad_a = grad * gelu(gate) and
// grad_gate = gelu'(gate) * (grad * a), with autograd's roundings (mul, mul, gelu_backward).
// gelu(gate) is recomputed, so the forward keeps only a and gate.
const char* geglu_backward(ElementType type, const void* grad, const void* a, const void* gate, void* grad_a,
                           void* grad_gate, std::int64_t n, void* stream);

}  // namespace sdxl::nn::kernels
