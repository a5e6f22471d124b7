// Keeping data-parallel ranks in lockstep: one all-reduce of all LoRA gradients per step, and a
// check that every rank holds the same weights.
#pragma once

#include "sdxl_dreambooth/dist/collectives.h"
#include "sdxl_dreambooth/nn/lora_network.h"

#include <torch/torch.h>

#include <vector>

namespace sdxl::train {

// Every parameter's gradient in one contiguous float32 tensor on `device`, in `params` order;
// a missing gradient is zeros and `has_grad` (when given) says which were present. Gradients
// that already lie so in one buffer (nn::AdapterCast's backward) are returned as that buffer,
// not copied: writing into the result then writes into the gradients.
torch::Tensor flatten_gradients(const std::vector<torch::Tensor>& params, const torch::Device& device,
                                std::vector<bool>* has_grad = nullptr);

// Averages a flat gradient (flatten_gradients) over the ranks in place with one all-reduce; every
// rank then clips and steps on the same gradient. The step's loss (a one-element tensor) rides
// in the same buffer, so logging costs no extra collective. Returns the mean loss as a
// one-element float32 tensor on `flat`'s device, not read back: the host does not wait for
// the all-reduce (with NCCL it runs on the GPU's stream).
torch::Tensor average_flat_gradient(torch::Tensor& flat, const torch::Tensor& loss, dist::Collectives& comm);

// Compares a hash of the adapters' bytes across ranks (all-reduce of min and max); throws an
// Error naming `step` when they differ.
void check_weights_agree(const nn::LoraNetwork& lora, dist::Collectives& comm, std::int64_t step);

}  // namespace sdxl::train
