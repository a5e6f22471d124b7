// Transformer2DModel with BasicTransformerBlock (self-attention, cross-attention, GEGLU
// feed-forward) as SDXL's UNet uses them (diffusers/models/transformers/transformer_2d.py,
// diffusers/models/attention.py).
#pragma once

#include "sdxl_dreambooth/nn/attention.h"
#include "sdxl_dreambooth/nn/lora_linear.h"

#include <torch/torch.h>

namespace sdxl::nn {

// net.0 = GEGLU (proj), net.1 = Dropout, net.2 = Linear: keys ff.net.0.proj.*, ff.net.2.*
// (both linear layers can carry LoRA: lora.preset = "kohya")
class FeedForwardImpl : public torch::nn::Module {
 public:
  explicit FeedForwardImpl(std::int64_t dim, std::int64_t mult = 4);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::ModuleList net;
};
TORCH_MODULE(FeedForward);

class GEGLUImpl : public torch::nn::Module {
 public:
  GEGLUImpl(std::int64_t dim_in, std::int64_t dim_out);
  torch::Tensor forward(const torch::Tensor& x);
  LoraCompatibleLinear proj{nullptr};
  bool fused_kernel = false;  // nn/geglu_product's CUDA kernel (train.fused_kernels)
};
TORCH_MODULE(GEGLU);

class BasicTransformerBlockImpl : public torch::nn::Module {
 public:
  BasicTransformerBlockImpl(std::int64_t dim, std::int64_t heads, std::int64_t dim_head, std::int64_t cross_attention_dim,
                            bool upcast_attention);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context);
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr}, norm3{nullptr};
  Attention attn1{nullptr}, attn2{nullptr};
  FeedForward ff{nullptr};
};
TORCH_MODULE(BasicTransformerBlock);

struct Transformer2DConfig {
  std::int64_t in_channels = 0;
  std::int64_t heads = 8;
  std::int64_t dim_head = 64;
  std::int64_t num_layers = 1;
  std::int64_t cross_attention_dim = 0;
  std::int64_t norm_num_groups = 32;
  bool use_linear_projection = true;
  bool upcast_attention = false;
};

class Transformer2DModelImpl : public torch::nn::Module {
 public:
  explicit Transformer2DModelImpl(const Transformer2DConfig& config);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& context);

  torch::nn::GroupNorm norm{nullptr};
  torch::nn::AnyModule proj_in, proj_out;  // LoraCompatibleLinear (SDXL) or 1x1 Conv2d
  torch::nn::ModuleList transformer_blocks;

 private:
  Transformer2DConfig config_;
};
TORCH_MODULE(Transformer2DModel);

}  // namespace sdxl::nn
