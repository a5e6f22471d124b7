// SDXL's prompt encoding (diffusers StableDiffusionXLPipeline.encode_prompt): both text
// encoders' penultimate hidden states side by side, and text_encoder_2's projected pooled
// output.
#pragma once

#include "sdxl_dreambooth/nn/clip_text_model.h"

namespace sdxl::nn {

struct PromptEmbeddings {
  torch::Tensor prompt_embeds;         // [B, 77, D1 + D2]
  torch::Tensor pooled_prompt_embeds;  // [B, P2]
};

PromptEmbeddings encode_prompt(ClipTextModel& text_encoder, ClipTextModel& text_encoder_2, const torch::Tensor& ids_1,
                               const torch::Tensor& ids_2);

}  // namespace sdxl::nn
