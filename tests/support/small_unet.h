// A small SDXL-shaped UNet with random weights, for tests that need no reference data.
#pragma once

#include "sdxl_dreambooth/nn/unet_2d_condition.h"

#include <vector>

namespace sdxl::test {

// Two levels (DownBlock2D, CrossAttnDownBlock2D and their up counterparts), linear
// projections, "text_time" added embedding; weights drawn after torch::manual_seed(0).
nn::UNet2DConditionModel small_unet();

// Leaves only the to_q weights (the LoRA stand-in) trainable; returns them.
std::vector<torch::Tensor> train_only_to_q(nn::UNet2DConditionModel& unet);

// Its inputs for a batch of 2 (8×8 latents, 7 context tokens), drawn after manual_seed(seed):
// the prediction of `unet` for them.
torch::Tensor small_unet_forward(nn::UNet2DConditionModel& unet, std::uint64_t seed = 1);

}  // namespace sdxl::test
