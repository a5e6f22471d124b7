#include "sdxl_dreambooth/nn/clip_text_model.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/nn/attention.h"

#include <limits>

namespace sdxl::nn {

ClipAttentionImpl::ClipAttentionImpl(std::int64_t hidden, std::int64_t heads) : heads_(heads) {
  k_proj = register_module("k_proj", LoraCompatibleLinear(hidden, hidden));
  v_proj = register_module("v_proj", LoraCompatibleLinear(hidden, hidden));
  q_proj = register_module("q_proj", LoraCompatibleLinear(hidden, hidden));
  out_proj = register_module("out_proj", LoraCompatibleLinear(hidden, hidden));
}

torch::Tensor ClipAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& causal_mask) {
  const std::int64_t B = x.size(0), T = x.size(1), C = x.size(2), d = C / heads_;
  auto split = [&](const torch::Tensor& t) { return t.view({B, T, heads_, d}).transpose(1, 2); };
  AttentionOptions options;
  options.backend = AttentionBackend::kPortable;
  torch::Tensor out = scaled_dot_product_attention(split(q_proj(x)), split(k_proj(x)), split(v_proj(x)), options,
                                                   causal_mask);
  return out_proj(out.transpose(1, 2).reshape({B, T, C}));
}

ClipMlpImpl::ClipMlpImpl(std::int64_t hidden, std::int64_t intermediate, bool quick_gelu) : quick_gelu_(quick_gelu) {
  fc1 = register_module("fc1", torch::nn::Linear(hidden, intermediate));
  fc2 = register_module("fc2", torch::nn::Linear(intermediate, hidden));
}

torch::Tensor ClipMlpImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = fc1(x);
  h = quick_gelu_ ? h * torch::sigmoid(1.702 * h) : torch::gelu(h);
  return fc2(h);
}

ClipEncoderLayerImpl::ClipEncoderLayerImpl(const model::ClipTextConfig& c) {
  auto ln = [&] { return torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps)); };
  self_attn = register_module("self_attn", ClipAttention(c.hidden_size, c.num_attention_heads));
  layer_norm1 = register_module("layer_norm1", ln());
  mlp = register_module("mlp", ClipMlp(c.hidden_size, c.intermediate_size, c.hidden_act == "quick_gelu"));
  layer_norm2 = register_module("layer_norm2", ln());
}

torch::Tensor ClipEncoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& causal_mask) {
  torch::Tensor h = x + self_attn(layer_norm1(x), causal_mask);
  return h + mlp(layer_norm2(h));
}

ClipTextEmbeddingsImpl::ClipTextEmbeddingsImpl(const model::ClipTextConfig& c) {
  token_embedding = register_module("token_embedding", torch::nn::Embedding(c.vocab_size, c.hidden_size));
  position_embedding = register_module("position_embedding", torch::nn::Embedding(c.max_position_embeddings, c.hidden_size));
}

torch::Tensor ClipTextEmbeddingsImpl::forward(const torch::Tensor& ids) {
  const auto positions = torch::arange(ids.size(1), torch::TensorOptions().dtype(torch::kLong).device(ids.device()));
  return token_embeddings(ids) + position_embedding(positions).unsqueeze(0);
}

torch::Tensor ClipTextEmbeddingsImpl::token_embeddings(const torch::Tensor& ids) {
  if (!added_rows_.defined()) return token_embedding(ids);
  const torch::Tensor added = ids >= first_added_id_;
  const torch::Tensor base = token_embedding(ids.masked_fill(added, 0));
  // The gradient reaches only the rows the ids select (pivotal tuning trains nothing else).
  const torch::Tensor rows = torch::nn::functional::embedding(
      (ids - first_added_id_).clamp(0, added_rows_.size(0) - 1), added_rows_.to(base.scalar_type()));
  return torch::where(added.unsqueeze(-1), rows, base);
}

void ClipTextEmbeddingsImpl::set_added_tokens(std::int64_t first_id, torch::Tensor rows) {
  if (rows.defined() && (rows.dim() != 2 || rows.size(1) != token_embedding->weight.size(1))) {
    throw Error("token embeddings of shape " + c10::str(rows.sizes()) + " do not fit this text encoder's hidden size " +
                std::to_string(token_embedding->weight.size(1)));
  }
  first_added_id_ = first_id;
  added_rows_ = std::move(rows);
}

ClipEncoderImpl::ClipEncoderImpl(const model::ClipTextConfig& c) {
  layers = register_module("layers", torch::nn::ModuleList());
  for (std::int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(ClipEncoderLayer(c));
}

ClipTextTransformerImpl::ClipTextTransformerImpl(const model::ClipTextConfig& c) {
  embeddings = register_module("embeddings", ClipTextEmbeddings(c));
  encoder = register_module("encoder", ClipEncoder(c));
  final_layer_norm = register_module(
      "final_layer_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps)));
}

ClipTextModelImpl::ClipTextModelImpl(const model::ClipTextConfig& c) : config_(c) {
  text_model = register_module("text_model", ClipTextTransformer(c));
  if (c.with_projection) {
    text_projection = register_module(
        "text_projection", torch::nn::Linear(torch::nn::LinearOptions(c.hidden_size, c.projection_dim).bias(false)));
  }
}

ClipTextOutput ClipTextModelImpl::forward(const torch::Tensor& ids) {
  if (ids.dim() != 2 || ids.size(1) > config_.max_position_embeddings) {
    throw Error("CLIP text model: token ids must be [batch, <= " + std::to_string(config_.max_position_embeddings) +
                "], got " + c10::str(ids.sizes()));
  }
  const torch::Tensor input = ids.to(torch::kLong);
  ClipTextOutput out;
  torch::Tensor h = text_model->embeddings(input);
  const std::int64_t T = input.size(1);
  // Additive causal mask: a token attends to itself and earlier tokens only.
  const auto opts = torch::TensorOptions().dtype(h.scalar_type()).device(h.device());
  const double lowest = h.scalar_type() == torch::kFloat ? std::numeric_limits<float>::lowest()
                                                          : static_cast<double>(-65504.0);
  torch::Tensor mask = torch::full({T, T}, lowest, opts).triu(1).view({1, 1, T, T});
  out.hidden_states.push_back(h);
  for (const auto& layer : *text_model->encoder->layers) {
    h = layer->as<ClipEncoderLayer>()->forward(h, mask);
    out.hidden_states.push_back(h);
  }
  out.last_hidden_state = text_model->final_layer_norm(h);
  // ref: transformers CLIPTextTransformer: with eos_token_id == 2 (the legacy configs SDXL
  // ships) the EOS position is the argmax of the ids; otherwise the first eos_token_id.
  torch::Tensor eos_pos = config_.eos_token_id == 2
                              ? input.argmax(-1)
                              : (input == config_.eos_token_id).to(torch::kInt).argmax(-1);
  out.pooled_output =
      out.last_hidden_state.index({torch::arange(input.size(0), input.options()), eos_pos});
  if (text_projection) out.text_embeds = text_projection(out.pooled_output);
  return out;
}

}  // namespace sdxl::nn
