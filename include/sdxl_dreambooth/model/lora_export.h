// Writing trained LoRA adapters in the layouts other tools load.
//  - diffusers: what diffusers 0.27's StableDiffusionXLPipeline.save_lora_weights writes:
//    `unet.<module path>.lora.down.weight` (A, rank x in) / `.lora.up.weight` (B, out x rank) and
//    `text_encoder[_2].<module path>.lora_linear_layer.down/up.weight`, with no alpha (scale 1):
//    alpha / rank is folded into `up`. DoRA adds `<model>.<module path>.lora_magnitude_vector` (out),
//    the key diffusers 0.27's script saves.
//  - kohya: what kohya's sd-scripts writes for SDXL and ComfyUI / AUTOMATIC1111 load:
//    `lora_unet_<SGM module path with _>.lora_down.weight` / `.lora_up.weight` / `.alpha`
//    (e.g. lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q), `lora_te1_` /
//    `lora_te2_` + the text encoders' paths; A and B unscaled, alpha stored.
// LoCon's convolution adapters are 4-D in both (down [rank, in, k, k], up [out, rank, 1, 1]), under
// the resnet and sampler names of sgm_unet_names.h (kohya: lora_unet_input_blocks_1_0_in_layers_2;
// every upsampling block of SDXL has attentions, so its upsampler is output_blocks.N.2.conv).
#pragma once

#include "sdxl_dreambooth/nn/lora_network.h"

#include <torch/torch.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace sdxl::model {

enum class LoraFormat { kDiffusers, kKohya };
LoraFormat parse_lora_format(const std::string& name);  // "diffusers" | "kohya"; UsageError otherwise
const char* lora_format_name(LoraFormat format);

struct AdapterWeights {
  std::string module;  // diffusers module path inside its model
  torch::Tensor down;  // A: rank x in (LoCon: rank x in x k x k)
  torch::Tensor up;    // B: out x rank (LoCon: out x rank x 1 x 1)
  torch::Tensor magnitude;  // DoRA's m: out; undefined for plain LoRA
  std::optional<double> alpha;  // this adapter's, when not the model's (LoCon's 3x3 convolutions)
};

// The adapters of one model: "unet", "text_encoder" or "text_encoder_2".
struct ModelLoraWeights {
  std::string model;
  std::int64_t rank = 0;
  double alpha = 0;
  int layers_per_block = 0;  // UNet: needed for the SGM names of the kohya format
  std::vector<AdapterWeights> adapters;
};

// A trained network's current weights (float32, CPU).
ModelLoraWeights lora_weights(const nn::LoraNetwork& network, const std::string& model, int layers_per_block = 0);

// The named tensors of a file in `format`; a UNet module the SGM mapping does not know is an
// Error for kohya.
std::vector<std::pair<std::string, torch::Tensor>> lora_file_tensors(const std::vector<ModelLoraWeights>& models,
                                                                    LoraFormat format);

// Writes `path` atomically with `metadata` in __metadata__ (plus "format").
void write_lora_file(const std::string& path, const std::vector<ModelLoraWeights>& models, LoraFormat format,
                     std::map<std::string, std::string> metadata);

}  // namespace sdxl::model
