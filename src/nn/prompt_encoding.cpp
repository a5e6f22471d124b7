#include "sdxl_dreambooth/nn/prompt_encoding.h"

#include "sdxl_dreambooth/error.h"

namespace sdxl::nn {

PromptEmbeddings encode_prompt(ClipTextModel& text_encoder, ClipTextModel& text_encoder_2, const torch::Tensor& ids_1,
                               const torch::Tensor& ids_2) {
  if (!text_encoder_2->text_projection) {
    throw Error("SDXL's text_encoder_2 must be a CLIPTextModelWithProjection (its config.json architectures)");
  }
  const ClipTextOutput a = text_encoder(ids_1);
  const ClipTextOutput b = text_encoder_2(ids_2);
  PromptEmbeddings e;
  e.prompt_embeds = torch::cat({a.penultimate(), b.penultimate().to(a.penultimate().scalar_type())}, -1);
  e.pooled_prompt_embeds = b.text_embeds;
  return e;
}

}  // namespace sdxl::nn
