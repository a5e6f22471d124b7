// The adapters' float32 weights in the activations' dtype (bf16/fp16 training), cast once per
// forward pass for all adapters instead of where each is used. Per-use casts are one small
// kernel per A and per B in forward and another in backward: over 2,000 per SDXL step (560
// adapters), each launched by the host, which is what bounds a batch-1 step on a GPU. While an
// AdapterCast lives, every adapter of the network uses views of one tensor made by one cast of
// the float32 storage its parameters share (AdamW's flat buffer); backward is one cat of the
// gradients and one cast back, and each parameter's gradient is a view of that, with no copy.
#pragma once

#include "sdxl_dreambooth/nn/lora_network.h"

#include <torch/torch.h>

#include <vector>

namespace sdxl::nn {

// `params` (float32, side by side in one storage in this order, as AdamW's flat buffer keeps
// them) in `dtype` with one cast: views of one tensor, shaped as the parameters, through which
// gradients reach each parameter as a view of one float32 gradient. Empty when the parameters
// do not lie so, or are in `dtype` already.
std::vector<torch::Tensor> cast_together(const std::vector<torch::Tensor>& params, torch::ScalarType dtype);

class AdapterCast {
 public:
  // Prepares `network`'s adapters in `dtype` when they are not in it already and their
  // parameters lie side by side in one storage in network order (A, B per module); otherwise
  // does nothing and the layers cast their own weights as before. Scope it to the forward pass:
  // gradient checkpointing recomputes blocks in backward, where the layers must cast their own
  // parameters again.
  AdapterCast(const LoraNetwork& network, torch::ScalarType dtype);
  ~AdapterCast();
  AdapterCast(const AdapterCast&) = delete;
  AdapterCast& operator=(const AdapterCast&) = delete;

  bool active() const { return !modules_.empty() || !conv_modules_.empty(); }

 private:
  std::vector<LoraCompatibleLinear> modules_;
  std::vector<LoraCompatibleConv> conv_modules_;
};

}  // namespace sdxl::nn
