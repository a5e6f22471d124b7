// Keeping data-parallel ranks in lockstep: one all-reduce of all LoRA gradients per step, and a
// check that every rank holds the same weights.
#pragma once

#include "sdxl_dreambooth/dist/collectives.h"
#include "sdxl_dreambooth/nn/lora_network.h"

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace sdxl::train {

// Every parameter's gradient in one contiguous float32 tensor on `device`, in `params` order;
// a missing gradient is zeros and `has_grad` (when given) says which were present. Gradients
// that already lie so in one buffer (nn::AdapterCast's backward) are returned as that buffer,
// not copied: writing into the result then writes into the gradients.
torch::Tensor flatten_gradients(const std::vector<torch::Tensor>& params, const torch::Device& device,
                                std::vector<bool>* has_grad = nullptr);

// Averages a flat gradient (flatten_gradients) over the ranks in place with one all-reduce on
// the training device; every rank then clips and steps on the same gradient. The step's loss
// (a one-element tensor) rides in the same buffer, so logging costs no extra collective.
// Returns the mean loss as a one-element float32 tensor on `flat`'s device, not read back: the
// host does not wait for the all-reduce (with NCCL it runs on the GPU's stream). Called at
// every world size, one rank included.
torch::Tensor average_flat_gradient(torch::Tensor& flat, const torch::Tensor& loss, dist::DeviceCollectives& comm);

// One all-reduce of average_flat_gradient's size for `params`, before the first step: NCCL
// allocates a collective's buffers when it first runs (NVLS alone can take over 1 GB per GPU),
// so a device short of memory fails here, at set-up, not in step 1 or while a CUDA graph's
// memory pool is held.
void warm_up_gradient_all_reduce(const std::vector<torch::Tensor>& params, dist::DeviceCollectives& comm);

// One host all-reduce per step of what the ranks must agree on: whether any rank was asked to
// stop (`stop_requested`, updated in place), and which parameters have a gradient on any rank
// (returned; a parameter no rank computed a gradient for is left alone by AdamW, as in
// PyTorch).
std::vector<bool> agree_on_gradients(const std::vector<bool>& has_grad, bool& stop_requested,
                                     dist::HostCollectives& comm);

// A 64-bit hash of the parameters' float32 bytes, computed on their device (one 16-byte copy
// to the host).
std::uint64_t weights_hash(const std::vector<torch::Tensor>& params);

// Compares weights_hash across ranks (one host all-reduce); throws an Error naming `step` when
// they differ.
void check_weights_agree(const std::vector<torch::Tensor>& params, dist::HostCollectives& comm, std::int64_t step);

}  // namespace sdxl::train
