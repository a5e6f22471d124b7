#include "sdxl_dreambooth/nn/transformer_2d.h"

#include "sdxl_dreambooth/nn/geglu_product.h"
#include "sdxl_dreambooth/nn/linear_rows.h"

namespace sdxl::nn {

GEGLUImpl::GEGLUImpl(std::int64_t dim_in, std::int64_t dim_out) {
  proj = register_module("proj", LoraCompatibleLinear(dim_in, dim_out * 2));
}

torch::Tensor GEGLUImpl::forward(const torch::Tensor& x) {
  // diffusers: proj(x).chunk(2, -1). The two halves of one product are strided views, and gelu,
  // the product and their backward ran over them in strided kernels, 2-3x slower than over
  // contiguous tensors (the largest elementwise cost of a step on an H200), and the backward
  // joined the halves' gradients with a cat. The weight's halves are row blocks, so two
  // products give the same halves contiguous.
  const std::int64_t inner = proj->weight.size(0) / 2;
  if (proj->has_lora() && proj->lora_scale != 0.0) {
    // With an adapter (lora.preset = "kohya"): the layer's whole output, then its halves.
    const auto halves = proj->forward(x).split(inner, -1);
    return geglu_product(halves[0].contiguous(), halves[1].contiguous(), fused_kernel);
  }
  const auto w = proj->weight.split(inner, 0);
  const auto b = proj->bias.defined() ? proj->bias.split(inner, 0) : std::vector<torch::Tensor>{{}, {}};
  return geglu_product(linear_rows(x, w[0], b[0]), linear_rows(x, w[1], b[1]), fused_kernel);
}

FeedForwardImpl::FeedForwardImpl(std::int64_t dim, std::int64_t mult) {
  const std::int64_t inner = dim * mult;
  net = register_module("net", torch::nn::ModuleList());
  net->push_back(GEGLU(dim, inner));
  net->push_back(torch::nn::Dropout(0.0));
  net->push_back(LoraCompatibleLinear(inner, dim));
}

torch::Tensor FeedForwardImpl::forward(const torch::Tensor& x) {
  return net[2]->as<LoraCompatibleLinear>()->forward(net[0]->as<GEGLU>()->forward(x));
}

BasicTransformerBlockImpl::BasicTransformerBlockImpl(std::int64_t dim, std::int64_t heads, std::int64_t dim_head,
                                                     std::int64_t cross_attention_dim, bool upcast_attention) {
  auto ln = [&] { return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-5)); };
  AttentionConfig self_cfg;
  self_cfg.query_dim = dim;
  self_cfg.heads = heads;
  self_cfg.dim_head = dim_head;
  self_cfg.upcast_attention = upcast_attention;
  AttentionConfig cross_cfg = self_cfg;
  cross_cfg.cross_attention_dim = cross_attention_dim;
  norm1 = register_module("norm1", ln());
  attn1 = register_module("attn1", Attention(self_cfg));
  norm2 = register_module("norm2", ln());
  attn2 = register_module("attn2", Attention(cross_cfg));
  norm3 = register_module("norm3", ln());
  ff = register_module("ff", FeedForward(dim));
}

torch::Tensor BasicTransformerBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& context) {
  torch::Tensor h = attn1(norm1(x)) + x;
  h = attn2(norm2(h), context) + h;
  return ff(norm3(h)) + h;
}

Transformer2DModelImpl::Transformer2DModelImpl(const Transformer2DConfig& c) : config_(c) {
  const std::int64_t inner = c.heads * c.dim_head;
  norm = register_module("norm",
                         torch::nn::GroupNorm(torch::nn::GroupNormOptions(c.norm_num_groups, c.in_channels).eps(1e-6)));
  if (c.use_linear_projection) {
    proj_in = torch::nn::AnyModule(register_module("proj_in", LoraCompatibleLinear(c.in_channels, inner)));
  } else {
    proj_in = torch::nn::AnyModule(
        register_module("proj_in", torch::nn::Conv2d(torch::nn::Conv2dOptions(c.in_channels, inner, 1))));
  }
  transformer_blocks = register_module("transformer_blocks", torch::nn::ModuleList());
  for (std::int64_t i = 0; i < c.num_layers; ++i) {
    transformer_blocks->push_back(
        BasicTransformerBlock(inner, c.heads, c.dim_head, c.cross_attention_dim, c.upcast_attention));
  }
  if (c.use_linear_projection) {
    proj_out = torch::nn::AnyModule(register_module("proj_out", LoraCompatibleLinear(inner, c.in_channels)));
  } else {
    proj_out = torch::nn::AnyModule(
        register_module("proj_out", torch::nn::Conv2d(torch::nn::Conv2dOptions(inner, c.in_channels, 1))));
  }
}

torch::Tensor Transformer2DModelImpl::forward(const torch::Tensor& x, const torch::Tensor& context) {
  const std::int64_t B = x.size(0), H = x.size(2), W = x.size(3);
  torch::Tensor h = norm(x);
  if (config_.use_linear_projection) {
    h = h.permute({0, 2, 3, 1}).reshape({B, H * W, -1});
    h = proj_in.get<LoraCompatibleLinear>()->forward(h);
  } else {
    h = proj_in.forward(h);
    h = h.permute({0, 2, 3, 1}).reshape({B, H * W, -1});
  }
  for (const auto& block : *transformer_blocks) h = block->as<BasicTransformerBlock>()->forward(h, context);
  if (config_.use_linear_projection) {
    h = proj_out.get<LoraCompatibleLinear>()->forward(h);
    // In the input's layout: for channels-last activations this permutation is already laid out.
    h = h.reshape({B, H, W, -1}).permute({0, 3, 1, 2}).contiguous(x.suggest_memory_format());
  } else {
    h = h.reshape({B, H, W, -1}).permute({0, 3, 1, 2}).contiguous(x.suggest_memory_format());
    h = proj_out.forward(h);
  }
  return h + x;
}

}  // namespace sdxl::nn
