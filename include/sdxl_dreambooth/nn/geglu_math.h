// The per-element arithmetic of GEGLU's fused kernels (src/nn/geglu_kernel.cu), shared with the
// CPU test that checks it against ATen's composition: ATen's CUDA gelu and gelu_backward
// formulas in float, with a rounding to the element type wherever one of ATen's kernels ends.
#pragma once

#include <math.h>

#if defined(__CUDACC__)
#define SDXL_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define SDXL_HOST_DEVICE inline
#endif

namespace sdxl::nn::geglu_math {

constexpr float kAlpha = static_cast<float>(M_SQRT1_2);
constexpr float kBeta = static_cast<float>(M_2_SQRTPI * M_SQRT1_2 * 0.5);

// Round(x): x rounded to the element type and back (the identity for float32).
template <typename Round>
SDXL_HOST_DEVICE float gelu(float x, Round round) {
  return round(x * 0.5f * (1.0f + erff(x * kAlpha)));
}

// a * gelu(gate): ATen's gelu kernel, then its mul kernel.
template <typename Round>
SDXL_HOST_DEVICE float forward(float a, float gate, Round round) {
  return round(a * gelu(gate, round));
}

// Autograd's backward of a * gelu(gate): the mul's two gradients, then gelu_backward of the
// gate's one.
template <typename Round>
SDXL_HOST_DEVICE void backward(float grad, float a, float gate, Round round, float& grad_a, float& grad_gate) {
  grad_a = round(grad * gelu(gate, round));
  const float upstream = round(grad * a);
  const float cdf = 0.5f * (1.0f + erff(gate * kAlpha));
  const float pdf = expf(-0.5f * gate * gate) * kBeta;
  grad_gate = round(upstream * (cdf + gate * pdf));
}

}  // namespace sdxl::nn::geglu_math
