// Writing trained LoRA adapters in the layout other tools load. diffusers 0.27's
// StableDiffusionXLPipeline.save_lora_weights writes `unet.<module path>.lora.down.weight`
// (A, rank × in) and `.lora.up.weight` (B, out × rank) with no alpha, i.e. scale 1; adapters
// trained with alpha ≠ rank have alpha / rank folded into `up` so they load unchanged.
#pragma once

#include "sdxl_dreambooth/nn/lora_network.h"

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace sdxl::model {

// The tensors of `network` under diffusers' names with `prefix` ("unet", "text_encoder",
// "text_encoder_2"), float32 on the CPU.
std::vector<std::pair<std::string, torch::Tensor>> diffusers_lora_tensors(const nn::LoraNetwork& network,
                                                                         const std::string& prefix);

// Text-encoder adapters under diffusers 0.27's names:
// `<prefix>.<module path>.lora_linear_layer.down.weight` / `.up.weight`.
std::vector<std::pair<std::string, torch::Tensor>> diffusers_text_encoder_lora_tensors(const nn::LoraNetwork& network,
                                                                                      const std::string& prefix);

// Writes `<path>` (pytorch_lora_weights.safetensors) atomically, with `metadata` in
// __metadata__; the text-encoder networks are optional (null when not trained).
void write_diffusers_lora(const std::string& path, const nn::LoraNetwork& unet, const nn::LoraNetwork* text_encoder,
                          const nn::LoraNetwork* text_encoder_2, const std::map<std::string, std::string>& metadata);

}  // namespace sdxl::model
