// The one place where LibTorch version differences live. Debian ships LibTorch 1.13
// (CPU); clusters run CUDA builds of 2.x. Everything else calls these wrappers.
#pragma once

#include <torch/torch.h>
#include <torch/version.h>

#include <cstdint>
#include <optional>
#include <string>

// SDXL_TORCH_CUDA: set by CMake when LibTorch was built with CUDA (TORCH_CUDA_LIBRARIES);
// the CPU package ships the c10/cuda headers too, so their presence proves nothing.
#if defined(SDXL_TORCH_CUDA)
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#define SDXL_TORCH_VERSION_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) ||               \
   (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace sdxl::compat {

// at::scaled_dot_product_attention became a public op (with flash and memory-efficient
// CUDA kernels) in 2.0 and took an explicit scale in 2.1; 1.13 only has private prototypes.
constexpr bool kHasFusedSdpa = SDXL_TORCH_VERSION_AT_LEAST(2, 1);

inline std::string torch_version() { return TORCH_VERSION; }

inline bool cuda_available() { return torch::cuda::is_available(); }

// Fused attention softmax(q kᵀ · scale) v over [batch, heads, tokens, head_dim]. Returns
// nullopt when this LibTorch has no fused kernel, and the caller uses its portable path.
inline std::optional<torch::Tensor> fused_attention(const torch::Tensor& q, const torch::Tensor& k,
                                                    const torch::Tensor& v, double scale) {
#if SDXL_TORCH_VERSION_AT_LEAST(2, 1)
  return at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, /*dropout_p=*/0.0,
                                          /*is_causal=*/false, scale);
#else
  (void)q; (void)k; (void)v; (void)scale;
  return std::nullopt;
#endif
}

// The CUDA caching allocator's peak of allocated bytes on `device` since the last reset
// (torch.cuda.max_memory_allocated); nullopt without CUDA LibTorch. Stat index 0 is the
// aggregate over pools in every version (the StatType enum moved between namespaces).
inline std::optional<std::uint64_t> cuda_peak_allocated_bytes(int device) {
#if defined(SDXL_TORCH_CUDA)
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device);
  return static_cast<std::uint64_t>(stats.allocated_bytes[0].peak);
#else
  (void)device;
  return std::nullopt;
#endif
}

inline void cuda_reset_peak_allocated(int device) {
#if defined(SDXL_TORCH_CUDA)
  c10::cuda::CUDACachingAllocator::resetPeakStats(device);
#else
  (void)device;
#endif
}

// "NVIDIA H100 80GB HBM3"; empty without CUDA LibTorch.
inline std::string cuda_device_name(int device) {
#if defined(SDXL_TORCH_CUDA)
  return at::cuda::getDeviceProperties(device)->name;
#else
  (void)device;
  return {};
#endif
}

}  // namespace sdxl::compat
