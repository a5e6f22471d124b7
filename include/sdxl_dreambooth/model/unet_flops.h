// Model FLOPs of the SDXL UNet computed from its config (multiply-adds count 2): convolutions,
// linear layers and attention matmuls; norms, activations and the time/added embeddings
// (well under 0.1 %) are left out. For SDXL base 1.0 at 1024² one forward is 6.76 TFLOP and a
// LoRA training step 14.07 TFLOP per image, the figures MFU is measured against.
#pragma once

#include "sdxl_dreambooth/model/unet_config.h"

#include <cstdint>

namespace sdxl::model {

struct UNetFlops {
  double forward = 0;  // one forward pass, one sample
  // Forward plus backward of a LoRA step with adapters on the attention projections and every
  // base weight frozen: no weight gradients; input gradients (as many FLOPs as the forward,
  // twice for the attention matmuls, whose both operands carry gradients) from the loss back
  // to the first transformer block only, and none for the text-context key/value projections.
  double lora_training_step = 0;
};

UNetFlops unet_flops(const UNetConfig& config, std::int64_t height, std::int64_t width,
                     std::int64_t context_tokens = 77);

}  // namespace sdxl::model
