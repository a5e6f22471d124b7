// Published dense peak throughput of common training GPUs, the denominator of MFU (model
// FLOPs utilisation) in `bench`. Tensor-core peaks without sparsity, from NVIDIA's data sheets.
#pragma once

#include <optional>
#include <string>

namespace sdxl::util {

// Peak TFLOP/s of the GPU named `device_name` (as CUDA reports it, e.g. "NVIDIA H100 80GB
// HBM3") for bf16/fp16 matmuls (`reduced_precision`) or plain fp32 (LibTorch leaves TF32 off
// for matmuls by default); nullopt for a device not in the table.
std::optional<double> device_peak_tflops(const std::string& device_name, bool reduced_precision);

}  // namespace sdxl::util
