// The SDXL UNet's module paths in Stability's original (SGM / "ldm") layout, which kohya's
// sd-scripts, AUTOMATIC1111 and ComfyUI use for LoRA keys
// (`lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q`). Only the block prefix
// differs from diffusers; inside a Transformer2DModel the names are the same.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace sdxl::model {

// diffusers -> SGM for paths inside the UNet's attention (Transformer2DModel) blocks:
//   down_blocks.i.attentions.j.X -> input_blocks.(1 + i*(n+1) + j).1.X
//   mid_block.attentions.0.X     -> middle_block.1.X
//   up_blocks.i.attentions.j.X   -> output_blocks.(i*(n+1) + j).1.X
// with n = layers_per_block. Other paths (resnets, convs, embeddings) give nullopt.
std::optional<std::string> diffusers_to_sgm_unet_path(const std::string& path, int layers_per_block);

// layers_per_block recovered from diffusers module paths: up blocks hold n + 1 attentions,
// down blocks n. nullopt when no path is inside an attention block.
std::optional<int> layers_per_block_from_paths(const std::vector<std::string>& paths);

}  // namespace sdxl::model
