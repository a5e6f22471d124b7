// Scaled dot-product attention used by every module, and diffusers' `Attention` module
// (to_q/to_k/to_v/to_out.0) for the UNet's transformer blocks and the VAE mid-block.
#pragma once

#include "sdxl_dreambooth/nn/lora_linear.h"

#include <torch/torch.h>

#include <optional>
#include <vector>

namespace sdxl::nn {

enum class AttentionBackend {
  kAuto,      // fused kernel where LibTorch has one, else the portable path
  kPortable,  // softmax(q kᵀ) v in plain ops (LibTorch 1.13)
  kChunked,   // the portable path over query chunks: bounded memory for long sequences
};

struct AttentionOptions {
  AttentionBackend backend = AttentionBackend::kAuto;
  std::int64_t query_chunk = 4096;  // tokens per chunk for kChunked (and kAuto beyond it)
  bool upcast = false;              // compute scores and softmax in float32
};

// q, k, v: [batch, heads, tokens, head_dim]; optional additive mask broadcastable to
// [batch, heads, q_tokens, k_tokens]. Returns [batch, heads, q_tokens, head_dim].
torch::Tensor scaled_dot_product_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                           const AttentionOptions& options = {},
                                           const std::optional<torch::Tensor>& mask = std::nullopt);

struct AttentionConfig {
  std::int64_t query_dim = 0;
  std::int64_t cross_attention_dim = 0;  // 0: self-attention
  std::int64_t heads = 1;
  std::int64_t dim_head = 64;
  bool bias = false;                     // q/k/v projections
  bool upcast_attention = false;
  std::int64_t norm_num_groups = 0;      // >0: GroupNorm on 4-D input (VAE mid-block)
  double norm_eps = 1e-5;
  bool residual_connection = false;
  double rescale_output_factor = 1.0;
};

// ref: diffusers/models/attention_processor.py Attention + AttnProcessor2_0
class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(const AttentionConfig& config);
  // x: [B, N, C] or [B, C, H, W] (then flattened and restored); context: [B, M, D] or undefined.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context = {});

  // Puts the weights of the projections that read the same input (to_q, to_k, to_v in
  // self-attention; to_k, to_v in cross-attention) side by side in one storage, each weight a
  // view into it, so that forward computes them with one GEMM; memory use is unchanged and the
  // parameters keep their names. Their adapters' A matrices are concatenated in forward (a few
  // KiB), so the adapters read the input once too. Call it after the last cast or move of the
  // module: to() gives each weight its own storage again, and forward then computes the
  // projections one by one (same results). Projections with a bias (the VAE) stay separate.
  void fuse_projections();
  // Whether forward currently takes the fused path.
  bool projections_fused() const;

  torch::nn::GroupNorm group_norm{nullptr};
  LoraCompatibleLinear to_q{nullptr}, to_k{nullptr}, to_v{nullptr};
  torch::nn::ModuleList to_out;  // [LoraCompatibleLinear, Dropout] as in diffusers: keys to_out.0.*
  AttentionOptions options;

 private:
  // The projections that read the same input: to_q, to_k, to_v, or to_k, to_v with a context.
  std::vector<LoraCompatibleLinearImpl*> fused_layers() const;

  AttentionConfig config_;
};
TORCH_MODULE(Attention);

}  // namespace sdxl::nn
