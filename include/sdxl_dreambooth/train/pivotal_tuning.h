// Pivotal tuning (lora.train_text_encoder_ti; the advanced diffusers script's
// --train_text_encoder_ti, after replicate's cog-sdxl): each abstraction ("TOK") becomes new
// tokens <s0><s1>... in both tokenizers, whose embeddings both text encoders learn during the
// first lora.train_text_encoder_ti_frac of the steps while the UNet's LoRA trains throughout.
// Only the new rows are trained tensors: the embedding tables themselves never change.
#pragma once

#include "sdxl_dreambooth/config/run_config.h"
#include "sdxl_dreambooth/model/token_embeddings_file.h"
#include "sdxl_dreambooth/pipeline/sdxl_pipeline.h"
#include "sdxl_dreambooth/text/token_abstractions.h"

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace sdxl::train {

class PivotalTuning {
 public:
  // Adds the tokens to `pipe` (tokenizers and text encoders) with rows drawn from `init` as
  // randn × the standard deviation of each encoder's embedding table (diffusers' init), float32
  // on the pipeline's device; nullptr when lora.train_text_encoder_ti is off.
  static std::unique_ptr<PivotalTuning> start(const config::LoraConfig& lora, pipeline::SdxlPipeline& pipe,
                                              at::Generator& init);

  const text::TokenAbstractions& abstractions() const { return abstractions_; }
  // The trained tensors: the rows of text_encoder ("token_embeddings.clip_l") and of
  // text_encoder_2 ("token_embeddings.clip_g"), as checkpoints name them.
  std::vector<std::pair<std::string, torch::Tensor>> named_parameters() const;
  std::vector<torch::Tensor> parameters() const { return {clip_l_, clip_g_}; }
  std::int64_t num_parameters() const { return clip_l_.numel() + clip_g_.numel(); }

  // Optimizer steps (0-based) before this one train the embeddings: floor(frac × max_steps).
  static std::int64_t pivot_step(double frac, std::int64_t max_steps);

  // After every optimizer step (diffusers' retract_embeddings): each encoder's new rows are
  // scaled by (σ₀ / σ)^0.1, σ the standard deviation of those rows and σ₀ that of the
  // encoder's embedding table, which pulls their scale slowly towards the vocabulary's.
  void renormalize();

  // CPU copies for <name>_emb.safetensors.
  model::TokenEmbeddings embeddings() const;

 private:
  PivotalTuning(text::TokenAbstractions abstractions, torch::Tensor clip_l, torch::Tensor clip_g, double std_l,
                double std_g);

  text::TokenAbstractions abstractions_;
  torch::Tensor clip_l_, clip_g_;
  double std_l_ = 0, std_g_ = 0;  // σ₀ of text_encoder's and text_encoder_2's tables
};

}  // namespace sdxl::train
