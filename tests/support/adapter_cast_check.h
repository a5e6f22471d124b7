// nn::AdapterCast checked against per-use casts on a device: small_unet() in bfloat16 with
// rank-4 adapters on every attention projection, laid out by AdamW as in training; the unit
// tests run it on the CPU, cuda_parity_tests on a GPU.
#pragma once

#include <torch/torch.h>

namespace sdxl::test {

// One forward and backward pass per-use and one with AdapterCast: outputs and float32
// gradients within `tolerance` of max |per use| (0: bit for bit), one cast node for all
// adapters instead of one per weight (gtest expectations).
void expect_adapter_cast_matches_per_use_casts(const torch::Device& device, bool fuse_projections,
                                               double tolerance = 0);

}  // namespace sdxl::test
