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
// and for the layers of the resnets and samplers (kohya's LoCon):
//   down_blocks.i.resnets.j.R    -> input_blocks.(1 + i*(n+1) + j).0.R'
//   mid_block.resnets.k.R        -> middle_block.(2k).R'
//   up_blocks.i.resnets.j.R      -> output_blocks.(i*(n+1) + j).0.R'
//   down_blocks.i.downsamplers.0.conv -> input_blocks.((i+1)*(n+1)).0.op
//   up_blocks.i.upsamplers.0.conv     -> output_blocks.(i*(n+1) + n).2.conv (.1.conv when that
//                                        block has no attentions: `plain_up_blocks`)
// with R' = in_layers.2 (conv1), out_layers.3 (conv2), emb_layers.1 (time_emb_proj),
// skip_connection (conv_shortcut), n = layers_per_block. Other paths give nullopt.
std::optional<std::string> diffusers_to_sgm_unet_path(const std::string& path, int layers_per_block,
                                                      const std::vector<int>& plain_up_blocks = {});

// The up blocks of a UNet without attentions, from its module paths ("up_blocks.2.resnets.0"
// but no "up_blocks.2.attentions.").
std::vector<int> plain_up_blocks_from_paths(const std::vector<std::string>& paths);

// layers_per_block recovered from diffusers module paths: up blocks hold n + 1 attentions,
// down blocks n. nullopt when no path is inside an attention block.
std::optional<int> layers_per_block_from_paths(const std::vector<std::string>& paths);

}  // namespace sdxl::model
