// Keeping data-parallel ranks in lockstep: one all-reduce of all LoRA gradients per step, and a
// check that every rank holds the same weights.
#pragma once

#include "sdxl_dreambooth/dist/collectives.h"
#include "sdxl_dreambooth/nn/lora_network.h"

#include <torch/torch.h>

#include <vector>

namespace sdxl::train {

// Every parameter's gradient in one contiguous float32 tensor on `device`, in `params` order;
// a missing gradient is zeros and `has_grad` (when given) says which were present.
torch::Tensor flatten_gradients(const std::vector<torch::Tensor>& params, const torch::Device& device,
                                std::vector<bool>* has_grad = nullptr);

// Averages a flat gradient (flatten_gradients) over the ranks in place with one all-reduce; every
// rank then clips and steps on the same gradient. The step's loss rides in the same buffer (so
// logging costs no extra collective) and so does `stop`, when given: in, whether this rank was
// asked to stop (preemption); out, whether any rank was. Returns the mean loss.
double average_flat_gradient(torch::Tensor& flat, double loss, dist::Collectives& comm, bool* stop = nullptr);

// Compares a hash of the adapters' bytes across ranks (all-reduce of min and max); throws an
// Error naming `step` when they differ.
void check_weights_agree(const nn::LoraNetwork& lora, dist::Collectives& comm, std::int64_t step);

}  // namespace sdxl::train
