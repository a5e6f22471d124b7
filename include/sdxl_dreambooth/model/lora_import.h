// Reading a LoRA safetensors file written by this program, by diffusers
// (`unet.<module>.lora.down.weight` / `.lora.up.weight`, or peft's `.lora_A/.lora_B`) or in
// kohya's naming (`lora_unet_<module with _>.lora_down.weight`, `.lora_up.weight`, `.alpha`,
// with SGM paths such as input_blocks_4_1_... as sd-scripts writes them, or diffusers paths;
// what ComfyUI and AUTOMATIC1111 load), and applying it to a model's LoraCompatibleLinear
// projections and (LoCon's 4-D adapters) LoraCompatibleConv convolutions.
#pragma once

#include <torch/torch.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace sdxl::model {

struct LoraPair {
  torch::Tensor down;  // A: rank × in
  torch::Tensor up;    // B: out × rank
  std::optional<double> alpha;  // kohya's per-module alpha; none means scale 1
  // DoRA's magnitude per output feature ([out]): diffusers/peft `.lora_magnitude_vector`, or a
  // kohya/LyCORIS `.dora_scale` of shape [out, 1] (LyCORIS's wd_on_out, ComfyUI's output axis).
  torch::Tensor magnitude;
};

struct LoraFileContents {
  std::string path;
  std::string format;  // "diffusers", "peft" or "kohya"
  // Keyed by the module path *as written in the file* after the model prefix
  // (diffusers: "down_blocks.1....to_q"; kohya: "down_blocks_1_..._to_q").
  std::map<std::string, LoraPair> unet, text_encoder, text_encoder_2;
};

// Parses and checks the file (pairs complete, rank consistent between down and up). Throws
// sdxl::Error naming the file and the tensor.
LoraFileContents read_lora_file(const std::string& path);

struct LoraApplyReport {
  std::size_t applied = 0;          // modules that received an adapter
  std::vector<std::string> unused;  // module names in the file that match nothing
};

// Adds `adapters` (one model's part of `lora`) to `model` (scaled by `scale`): merged into the
// weights when `merge`, else as run-time adapters. An adapter whose shapes do not fit its
// module is an Error naming both.
LoraApplyReport apply_lora(torch::nn::Module& model, const std::map<std::string, LoraPair>& adapters,
                           const std::string& source, double scale, bool merge);

}  // namespace sdxl::model
