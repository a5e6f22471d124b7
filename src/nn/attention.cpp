#include "sdxl_dreambooth/nn/attention.h"

#include "sdxl_dreambooth/torch_compat.h"

#include <cmath>

namespace sdxl::nn {

namespace {

torch::Tensor portable_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                                 bool upcast, const std::optional<torch::Tensor>& mask) {
  const auto dtype = q.scalar_type();
  torch::Tensor scores = upcast ? torch::matmul(q.to(torch::kFloat), k.to(torch::kFloat).transpose(-1, -2))
                                : torch::matmul(q, k.transpose(-1, -2));
  scores = scores * scale;
  if (mask) scores = scores + mask->to(scores.scalar_type());
  // Softmax in float32 for half inputs, as the fused kernels do.
  torch::Tensor probs = torch::softmax(scores, -1, torch::kFloat).to(v.scalar_type());
  return torch::matmul(probs, v).to(dtype);
}

}  // namespace

torch::Tensor scaled_dot_product_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                           const AttentionOptions& options, const std::optional<torch::Tensor>& mask) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  const std::int64_t tokens = q.size(-2);
  AttentionBackend backend = options.backend;
  if (backend == AttentionBackend::kAuto) {
    if (!mask && !options.upcast) {
      if (auto fused = compat::fused_attention(q, k, v, scale)) return *fused;
    }
    backend = tokens > options.query_chunk ? AttentionBackend::kChunked : AttentionBackend::kPortable;
  }
  if (backend == AttentionBackend::kPortable || tokens <= options.query_chunk) {
    return portable_attention(q, k, v, scale, options.upcast, mask);
  }
  // Chunked: the [tokens x tokens] score matrix never exists at once (the VAE mid-block
  // attends over 16,384 tokens at 1024 px).
  std::vector<torch::Tensor> parts;
  for (std::int64_t start = 0; start < tokens; start += options.query_chunk) {
    const std::int64_t len = std::min(options.query_chunk, tokens - start);
    std::optional<torch::Tensor> chunk_mask;
    if (mask) chunk_mask = mask->size(-2) == 1 ? *mask : mask->narrow(-2, start, len);
    parts.push_back(portable_attention(q.narrow(-2, start, len), k, v, scale, options.upcast, chunk_mask));
  }
  return torch::cat(parts, -2);
}

AttentionImpl::AttentionImpl(const AttentionConfig& c) : config_(c) {
  const std::int64_t inner = c.heads * c.dim_head;
  const std::int64_t kv_dim = c.cross_attention_dim > 0 ? c.cross_attention_dim : c.query_dim;
  if (c.norm_num_groups > 0) {
    group_norm = register_module(
        "group_norm", torch::nn::GroupNorm(torch::nn::GroupNormOptions(c.norm_num_groups, c.query_dim).eps(c.norm_eps)));
  }
  to_q = register_module("to_q", LoraCompatibleLinear(c.query_dim, inner, c.bias));
  to_k = register_module("to_k", LoraCompatibleLinear(kv_dim, inner, c.bias));
  to_v = register_module("to_v", LoraCompatibleLinear(kv_dim, inner, c.bias));
  to_out = register_module("to_out", torch::nn::ModuleList());
  to_out->push_back(LoraCompatibleLinear(inner, c.query_dim, true));
  to_out->push_back(torch::nn::Dropout(0.0));
  options.upcast = c.upcast_attention;
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& input, const torch::Tensor& context) {
  torch::Tensor x = input;
  const bool spatial = x.dim() == 4;
  std::int64_t B = x.size(0), C = 0, H = 0, W = 0;
  if (spatial) {
    C = x.size(1), H = x.size(2), W = x.size(3);
    x = x.view({B, C, H * W}).transpose(1, 2);
  }
  if (group_norm) x = group_norm(x.transpose(1, 2)).transpose(1, 2);
  const torch::Tensor ctx = context.defined() ? context : x;
  const std::int64_t h = config_.heads, d = config_.dim_head;
  auto split = [&](const torch::Tensor& t) { return t.view({B, -1, h, d}).transpose(1, 2); };
  torch::Tensor q = split(to_q(x)), k = split(to_k(ctx)), v = split(to_v(ctx));
  torch::Tensor out = scaled_dot_product_attention(q, k, v, options);
  out = out.transpose(1, 2).reshape({B, -1, h * d});
  out = to_out[0]->as<LoraCompatibleLinear>()->forward(out);
  if (spatial) out = out.transpose(-1, -2).reshape({B, C, H, W});
  if (config_.residual_connection) out = out + input;
  if (config_.rescale_output_factor != 1.0) out = out / config_.rescale_output_factor;
  return out;
}

}  // namespace sdxl::nn
