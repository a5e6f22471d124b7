// The one place where LibTorch version differences live. Debian ships LibTorch 1.13
// (CPU); clusters run CUDA builds of 2.x. Everything else calls these wrappers.
#pragma once

#include <torch/torch.h>
#include <torch/version.h>

#include <optional>
#include <string>

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

}  // namespace sdxl::compat
