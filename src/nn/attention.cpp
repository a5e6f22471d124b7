#include "sdxl_dreambooth/nn/attention.h"

#include "sdxl_dreambooth/nn/batched_matmul.h"
#include "sdxl_dreambooth/torch_compat.h"
#include "sdxl_dreambooth/util/adjacent_tensors.h"

#include <cmath>

namespace sdxl::nn {

namespace {

torch::Tensor portable_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                                 bool upcast, const std::optional<torch::Tensor>& mask) {
  const auto dtype = q.scalar_type();
  torch::Tensor scores = upcast ? batched_matmul(q.to(torch::kFloat), k.to(torch::kFloat).transpose(-1, -2))
                                : batched_matmul(q, k.transpose(-1, -2));
  scores = scores * scale;
  if (mask) scores = scores + mask->to(scores.scalar_type());
  // Softmax in float32 for half inputs, as the fused kernels do.
  torch::Tensor probs = torch::softmax(scores, -1, torch::kFloat).to(v.scalar_type());
  return batched_matmul(probs, v).to(dtype);
}

// The weights of `layers` as one [Σ out, in] tensor, without a copy, when they lie side by side
// in one storage in this order (fuse_projections); undefined otherwise.
torch::Tensor adjacent_weights(const std::vector<LoraCompatibleLinearImpl*>& layers) {
  std::vector<torch::Tensor> weights;
  std::int64_t rows = 0;
  for (const auto* l : layers) {
    if (l->bias.defined() || l->weight.size(1) != layers.front()->weight.size(1)) return {};
    weights.push_back(l->weight);
    rows += l->weight.size(0);
  }
  const torch::Tensor flat = util::adjacent_tensors(weights);
  if (!flat.defined()) return {};
  // Over the first weight, not the detached view: it spans the others' rows in the storage.
  const torch::Tensor& first = layers.front()->weight;
  return first.as_strided({rows, first.size(1)}, {first.size(1), 1}, first.storage_offset());
}

// Each layer's output for input x: one GEMM over the fused weight and, when every layer has an
// adapter, the A sides as one GEMM and the B sides as one more that accumulates into the fused
// output (a block-diagonal B), so that the parts come out of one buffer with no further pass.
std::vector<torch::Tensor> fused_projections(const std::vector<LoraCompatibleLinearImpl*>& layers,
                                             const torch::Tensor& fused_weight, const torch::Tensor& x) {
  namespace F = torch::nn::functional;
  // split, not narrow: split's backward is one cat of the parts' gradients, narrow's a zeroed
  // full-width buffer per part, summed.
  std::vector<std::int64_t> widths;
  for (const auto* l : layers) {
    widths.push_back(l->out_features());
  }
  const torch::Tensor x2 = x.reshape({-1, x.size(-1)});
  torch::Tensor y = F::linear(x2, fused_weight);
  const auto dtype = x.scalar_type();
  bool adapters = true, same_scaling = true, dora = false;
  for (const auto* l : layers) {
    // Dropout draws a mask per layer: those adapt one by one.
    adapters = adapters && l->has_lora() && l->lora_scale != 0.0 && !l->dropout_active();
    same_scaling = same_scaling && adapters && l->lora_scaling() == layers.front()->lora_scaling();
    dora = dora || (adapters && l->has_dora());
  }
  if (adapters) {
    // DoRA: every column of y scaled by its layer's base factor, and each B's rows by the
    // adapter factor, before the B GEMM adds into y (a DoRA layer has no scale · in lora_scaling).
    std::vector<torch::Tensor> a_weights, b_weights, base_factors;
    // Without AdapterCast, A's cast after the cat: one cast instead of one per layer.
    const bool prepared = layers.front()->cast_A.defined();
    for (const auto* l : layers) {
      a_weights.push_back(prepared ? l->lora_A_as(dtype) : l->lora_A->weight);
      torch::Tensor b = l->lora_B_as(dtype);
      double scaling = l->lora_scaling();
      if (l->has_dora()) {
        const auto f = l->dora_factors();
        base_factors.push_back(f.base);
        b = b * f.adapter.to(dtype).unsqueeze(1);
        scaling = l->lora_alpha() / static_cast<double>(l->lora_rank());
      } else if (dora) {
        base_factors.push_back(torch::ones({l->out_features()}, torch::TensorOptions().device(y.device())));
      }
      b_weights.push_back(same_scaling && !dora ? b : b * scaling);
    }
    if (dora) y = y * torch::cat(base_factors).to(dtype);
    const torch::Tensor a = F::linear(x2, LoraCompatibleLinearImpl::lora_cast(torch::cat(a_weights), dtype));
    y.addmm_(a, torch::block_diag(b_weights).t(), /*beta=*/1.0,
             /*alpha=*/same_scaling && !dora ? layers.front()->lora_scaling() : 1.0);
  }
  auto shape = x.sizes().vec();
  shape.back() = y.size(1);
  std::vector<torch::Tensor> out = y.view(shape).split_with_sizes(widths, -1);
  if (!adapters) {
    for (std::size_t i = 0; i < layers.size(); ++i) out[i] = layers[i]->adapt(out[i], x);
  }
  return out;
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
  torch::Tensor q, k, v;
  const bool self_attention = !context.defined();
  const auto shared = fused_layers();
  const torch::Tensor fused = adjacent_weights(shared);
  if (fused.defined() && self_attention && config_.cross_attention_dim == 0) {
    const auto p = fused_projections(shared, fused, x);
    q = split(p[0]), k = split(p[1]), v = split(p[2]);
  } else if (fused.defined() && config_.cross_attention_dim > 0) {
    const auto p = fused_projections(shared, fused, ctx);
    q = split(to_q(x)), k = split(p[0]), v = split(p[1]);
  } else {
    q = split(to_q(x)), k = split(to_k(ctx)), v = split(to_v(ctx));
  }
  torch::Tensor out = scaled_dot_product_attention(q, k, v, options);
  out = out.transpose(1, 2).reshape({B, -1, h * d});
  out = to_out[0]->as<LoraCompatibleLinear>()->forward(out);
  if (spatial) out = out.transpose(-1, -2).reshape({B, C, H, W});
  if (config_.residual_connection) out = out + input;
  if (config_.rescale_output_factor != 1.0) out = out / config_.rescale_output_factor;
  return out;
}

std::vector<LoraCompatibleLinearImpl*> AttentionImpl::fused_layers() const {
  // ptr().get(): the holders are const here, the modules are not.
  if (config_.cross_attention_dim > 0) return {to_k.ptr().get(), to_v.ptr().get()};
  return {to_q.ptr().get(), to_k.ptr().get(), to_v.ptr().get()};
}

void AttentionImpl::fuse_projections() {
  const auto layers = fused_layers();
  for (const auto* l : layers) {
    if (l->bias.defined()) return;
  }
  if (adjacent_weights(layers).defined()) return;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> weights;
  for (const auto* l : layers) weights.push_back(l->weight);
  const torch::Tensor fused = torch::cat(weights);
  std::int64_t row = 0;
  for (auto* l : layers) {
    const std::int64_t n = l->weight.size(0);
    l->weight.set_data(fused.narrow(0, row, n));
    row += n;
  }
}

bool AttentionImpl::projections_fused() const { return adjacent_weights(fused_layers()).defined(); }

}  // namespace sdxl::nn
