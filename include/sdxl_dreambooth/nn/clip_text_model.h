// CLIPTextModel and CLIPTextModelWithProjection (transformers/models/clip/modeling_clip.py):
// token + position embeddings, pre-LayerNorm encoder layers with a causal mask,
// final LayerNorm, pooled output at the EOS position, optional text_projection.
#pragma once

#include "sdxl_dreambooth/model/clip_text_config.h"

#include "sdxl_dreambooth/nn/lora_linear.h"

#include <torch/torch.h>

#include <vector>

namespace sdxl::nn {

struct ClipTextOutput {
  torch::Tensor last_hidden_state;           // [B, T, H], after final_layer_norm
  std::vector<torch::Tensor> hidden_states;  // embeddings, then each layer's output (L + 1)
  torch::Tensor pooled_output;               // [B, H] at the EOS token
  torch::Tensor text_embeds;                 // [B, P] = text_projection(pooled); with projection only
  const torch::Tensor& penultimate() const { return hidden_states.at(hidden_states.size() - 2); }
};

class ClipAttentionImpl : public torch::nn::Module {
 public:
  ClipAttentionImpl(std::int64_t hidden, std::int64_t heads);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& causal_mask);
  LoraCompatibleLinear k_proj{nullptr}, v_proj{nullptr}, q_proj{nullptr}, out_proj{nullptr};

 private:
  std::int64_t heads_;
};
TORCH_MODULE(ClipAttention);

class ClipMlpImpl : public torch::nn::Module {
 public:
  ClipMlpImpl(std::int64_t hidden, std::int64_t intermediate, bool quick_gelu);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};

 private:
  bool quick_gelu_;
};
TORCH_MODULE(ClipMlp);

class ClipEncoderLayerImpl : public torch::nn::Module {
 public:
  explicit ClipEncoderLayerImpl(const model::ClipTextConfig& c);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& causal_mask);
  ClipAttention self_attn{nullptr};
  torch::nn::LayerNorm layer_norm1{nullptr}, layer_norm2{nullptr};
  ClipMlp mlp{nullptr};
};
TORCH_MODULE(ClipEncoderLayer);

class ClipTextEmbeddingsImpl : public torch::nn::Module {
 public:
  explicit ClipTextEmbeddingsImpl(const model::ClipTextConfig& c);
  torch::Tensor forward(const torch::Tensor& ids);
  // Pivotal tuning: ids from `first_id` on read the rows of `rows` [n, hidden] (trained or
  // loaded) instead of token_embedding, which stays untouched; rows kept outside the module's
  // parameters, so its state dict keeps the checkpoint's keys. An undefined `rows` removes them.
  void set_added_tokens(std::int64_t first_id, torch::Tensor rows);
  const torch::Tensor& added_rows() const { return added_rows_; }

  torch::nn::Embedding token_embedding{nullptr}, position_embedding{nullptr};

 private:
  torch::Tensor token_embeddings(const torch::Tensor& ids);

  std::int64_t first_added_id_ = 0;
  torch::Tensor added_rows_;
};
TORCH_MODULE(ClipTextEmbeddings);

class ClipEncoderImpl : public torch::nn::Module {
 public:
  explicit ClipEncoderImpl(const model::ClipTextConfig& c);
  torch::nn::ModuleList layers;
};
TORCH_MODULE(ClipEncoder);

class ClipTextTransformerImpl : public torch::nn::Module {
 public:
  explicit ClipTextTransformerImpl(const model::ClipTextConfig& c);
  ClipTextEmbeddings embeddings{nullptr};
  ClipEncoder encoder{nullptr};
  torch::nn::LayerNorm final_layer_norm{nullptr};
};
TORCH_MODULE(ClipTextTransformer);

class ClipTextModelImpl : public torch::nn::Module {
 public:
  explicit ClipTextModelImpl(const model::ClipTextConfig& config);
  // ids: [B, T] int64 token ids.
  ClipTextOutput forward(const torch::Tensor& ids);
  const model::ClipTextConfig& config() const { return config_; }

  ClipTextTransformer text_model{nullptr};
  torch::nn::Linear text_projection{nullptr};

 private:
  model::ClipTextConfig config_;
};
TORCH_MODULE(ClipTextModel);

}  // namespace sdxl::nn
