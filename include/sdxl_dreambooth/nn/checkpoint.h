// Gradient checkpointing for LibTorch, which has no checkpoint API: the forward pass runs
// without recording a graph, the backward pass recomputes it and differentiates. Like
// PyTorch's non-reentrant checkpoint, gradients reach trainable parameters inside the
// function even when none of its inputs require grad (the LoRA case: frozen activations
// flow into a block whose adapters train).
#pragma once

#include <torch/torch.h>

#include <functional>
#include <vector>

namespace sdxl::nn {

using CheckpointedFn = std::function<torch::Tensor(const std::vector<torch::Tensor>& inputs)>;

// fn(inputs) with its activations dropped after forward and recomputed in backward.
// `params`: the tensors requiring grad that fn reads besides `inputs` (e.g. LoRA weights).
// fn must be deterministic (no dropout); without grad mode it simply calls fn.
torch::Tensor checkpoint(const CheckpointedFn& fn, const std::vector<torch::Tensor>& inputs,
                         const std::vector<torch::Tensor>& params);

// The parameters of `module` that require grad: what `checkpoint` must be told about.
std::vector<torch::Tensor> trainable_parameters(const torch::nn::Module& module);

}  // namespace sdxl::nn
