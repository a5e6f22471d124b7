// One pass over memory for GEGLU's product and one for its gradient, where ATen's kernels take
// two (gelu, mul) and four (gelu again, since nn/geglu_product does not keep it, mul, mul,
// gelu_backward). The per-element arithmetic follows ATen's CUDA kernels (ActivationGeluKernel.cu and
// the binary mul: float math, a rounding to the element type at the end of each ATen kernel),
// so that the fused result is ATen's up to the compiler's contractions.
#include "sdxl_dreambooth/nn/geglu_kernel.h"
#include "sdxl_dreambooth/nn/geglu_math.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>

namespace sdxl::nn::kernels {
namespace {

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// A value rounded to T and back, as between two ATen kernels.
template <typename T>
struct RoundTo {
  __host__ __device__ float operator()(float x) const { return to_float(from_float<T>(x)); }
};

template <typename T>
__device__ __forceinline__ T forward_one(T a, T gate) {
  return from_float<T>(geglu_math::forward(to_float(a), to_float(gate), RoundTo<T>()));
}

template <typename T>
__device__ __forceinline__ void backward_one(T grad, T a, T gate, T& grad_a, T& grad_gate) {
  float da = 0, dg = 0;
  geglu_math::backward(to_float(grad), to_float(a), to_float(gate), RoundTo<T>(), da, dg);
  grad_a = from_float<T>(da);
  grad_gate = from_float<T>(dg);
}

// kVec elements per load: 16 bytes when every pointer allows it, else one element.
template <typename T, int kVec>
struct alignas(sizeof(T) * kVec) Pack {
  T v[kVec];
};

template <typename T, int kVec>
__global__ void forward_kernel(const T* __restrict__ a, const T* __restrict__ gate, T* __restrict__ out,
                               std::int64_t packs) {
  using P = Pack<T, kVec>;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t p = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < packs; p += stride) {
    const P va = reinterpret_cast<const P*>(a)[p];
    const P vg = reinterpret_cast<const P*>(gate)[p];
    P vo;
#pragma unroll
    for (int j = 0; j < kVec; ++j) vo.v[j] = forward_one(va.v[j], vg.v[j]);
    reinterpret_cast<P*>(out)[p] = vo;
  }
}

template <typename T, int kVec>
__global__ void backward_kernel(const T* __restrict__ grad, const T* __restrict__ a, const T* __restrict__ gate,
                                T* __restrict__ grad_a, T* __restrict__ grad_gate, std::int64_t packs) {
  using P = Pack<T, kVec>;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t p = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < packs; p += stride) {
    const P vd = reinterpret_cast<const P*>(grad)[p];
    const P va = reinterpret_cast<const P*>(a)[p];
    const P vg = reinterpret_cast<const P*>(gate)[p];
    P da, dg;
#pragma unroll
    for (int j = 0; j < kVec; ++j) backward_one(vd.v[j], va.v[j], vg.v[j], da.v[j], dg.v[j]);
    reinterpret_cast<P*>(grad_a)[p] = da;
    reinterpret_cast<P*>(grad_gate)[p] = dg;
  }
}

constexpr int kThreads = 256;

unsigned blocks_for(std::int64_t packs) {
  // A grid-stride loop covers the rest; 65,535 blocks of 256 threads fill any current GPU.
  return static_cast<unsigned>(std::max<std::int64_t>(1, std::min<std::int64_t>((packs + kThreads - 1) / kThreads, 65535)));
}

template <int kVec>
bool aligned(std::initializer_list<const void*> pointers, std::int64_t n, std::size_t element) {
  if (n % kVec != 0) return false;
  for (const void* p : pointers) {
    if (reinterpret_cast<std::uintptr_t>(p) % (element * kVec) != 0) return false;
  }
  return true;
}

const char* launched() {
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

template <typename T>
const char* forward_typed(const void* a, const void* gate, void* out, std::int64_t n, cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  const auto* pa = static_cast<const T*>(a);
  const auto* pg = static_cast<const T*>(gate);
  auto* po = static_cast<T*>(out);
  if (aligned<kVec>({a, gate, out}, n, sizeof(T))) {
    forward_kernel<T, kVec><<<blocks_for(n / kVec), kThreads, 0, stream>>>(pa, pg, po, n / kVec);
  } else {
    forward_kernel<T, 1><<<blocks_for(n), kThreads, 0, stream>>>(pa, pg, po, n);
  }
  return launched();
}

template <typename T>
const char* backward_typed(const void* grad, const void* a, const void* gate, void* grad_a, void* grad_gate,
                           std::int64_t n, cudaStream_t stream) {
  constexpr int kVec = 16 / sizeof(T);
  const auto* pd = static_cast<const T*>(grad);
  const auto* pa = static_cast<const T*>(a);
  const auto* pg = static_cast<const T*>(gate);
  auto* da = static_cast<T*>(grad_a);
  auto* dg = static_cast<T*>(grad_gate);
  if (aligned<kVec>({grad, a, gate, grad_a, grad_gate}, n, sizeof(T))) {
    backward_kernel<T, kVec><<<blocks_for(n / kVec), kThreads, 0, stream>>>(pd, pa, pg, da, dg, n / kVec);
  } else {
    backward_kernel<T, 1><<<blocks_for(n), kThreads, 0, stream>>>(pd, pa, pg, da, dg, n);
  }
  return launched();
}

}  // namespace

const char* geglu_forward(ElementType type, const void* a, const void* gate, void* out, std::int64_t n, void* stream) {
  if (n == 0) return nullptr;
  const auto s = static_cast<cudaStream_t>(stream);
  switch (type) {
    case ElementType::kFloat32: return forward_typed<float>(a, gate, out, n, s);
    case ElementType::kFloat16: return forward_typed<__half>(a, gate, out, n, s);
    case ElementType::kBFloat16: return forward_typed<__nv_bfloat16>(a, gate, out, n, s);
  }
  return "unknown element type";
}

const char* geglu_backward(ElementType type, const void* grad, const void* a, const void* gate, void* grad_a,
                           void* grad_gate, std::int64_t n, void* stream) {
  if (n == 0) return nullptr;
  const auto s = static_cast<cudaStream_t>(stream);
  switch (type) {
    case ElementType::kFloat32: return backward_typed<float>(grad, a, gate, grad_a, grad_gate, n, s);
    case ElementType::kFloat16: return backward_typed<__half>(grad, a, gate, grad_a, grad_gate, n, s);
    case ElementType::kBFloat16: return backward_typed<__nv_bfloat16>(grad, a, gate, grad_a, grad_gate, n, s);
  }
  return "unknown element type";
}

}  // namespace sdxl::nn::kernels
