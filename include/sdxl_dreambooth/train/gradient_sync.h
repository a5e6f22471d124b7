// Keeping data-parallel ranks in lockstep: one all-reduce of all LoRA gradients per step, and a
// check that every rank holds the same weights.
#pragma once

#include "sdxl_dreambooth/dist/collectives.h"
#include "sdxl_dreambooth/nn/lora_network.h"

#include <torch/torch.h>

#include <vector>

namespace sdxl::train {

// Averages every parameter's gradient over the ranks with one all-reduce of a flat buffer
// (the step's loss appended, so logging costs no extra collective); a missing gradient counts
// as zero. Every rank then clips and steps on the same gradient. Returns the mean loss.
double average_gradients(const std::vector<torch::Tensor>& params, double loss, dist::Collectives& comm);

// Compares a hash of the adapters' bytes across ranks (all-reduce of min and max); throws an
// Error naming `step` when they differ.
void check_weights_agree(const nn::LoraNetwork& lora, dist::Collectives& comm, std::int64_t step);

}  // namespace sdxl::train
