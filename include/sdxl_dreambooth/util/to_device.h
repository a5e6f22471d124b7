// Host-to-device copies that do not make the host wait for the device.
#pragma once

#include <torch/torch.h>

namespace sdxl::util {

// `host` (a CPU tensor) on `device`. On CUDA the bytes go through pinned memory with a
// non-blocking copy, ordered on the current stream; LibTorch's caching host allocator keeps
// the pinned block until the copy has run. A plain .to(cuda) synchronises the stream first
// (at::cuda::memcpy_and_sync), so every batch uploaded that way would drain the GPU's queue
// and leave it idle while the host prepares the next kernels. Elsewhere it is .to(device).
torch::Tensor to_device_async(const torch::Tensor& host, const torch::Device& device);

}  // namespace sdxl::util
