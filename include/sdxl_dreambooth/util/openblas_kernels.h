// Which of its kernel families a DYNAMIC_ARCH OpenBLAS (Debian's) runs, and mending its choice
// when it did not recognise the CPU. OpenBLAS picks the family from the CPU model number;
// 0.3.21 (Debian 12) does not know Emerald Rapids (family 6, model 207), takes it for a
// Prescott and runs its SSE3 kernels on an AVX-512 CPU: a full-size UNet training step ran
// 1.66x slower and full-size generation 2.8x (docs/benchmarks.md). OPENBLAS_CORETYPE
// overrides the choice; this sets it when OpenBLAS's own was older than what the CPU (and the
// operating system) can run.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace sdxl::util {

// The newest x86-64 vector extension a kernel family uses, or a CPU supports; ordered.
enum class SimdLevel { unknown, sse3, avx, avx2, avx512 };

std::string_view simd_level_name(SimdLevel level);  // "SSE3", "AVX", "AVX2", "AVX-512", "unknown"

// What this CPU supports and the operating system enables (AVX-512 needs both); unknown off
// x86-64.
SimdLevel cpu_simd_level();

// The level of an OpenBLAS x86-64 kernel family by its name as openblas_get_corename() gives it
// ("SkylakeX" -> AVX-512, "Haswell" and "Zen" -> AVX2, "Prescott" -> SSE3), case-insensitively;
// unknown for other names (ARM, POWER, a family newer than this table).
SimdLevel openblas_kernel_level(std::string_view core);

// The kernel family to use on a CPU of `level`: "SkylakeX", "Haswell", "Sandybridge"; "" when
// there is nothing better than OpenBLAS's oldest.
std::string openblas_kernels_for(SimdLevel level);

// The kernel family the process's OpenBLAS runs; "" when LibTorch's BLAS is not a DYNAMIC_ARCH
// OpenBLAS.
std::string openblas_kernels();

struct OpenBlasKernelSwitch {
  std::string from;  // "Prescott"
  std::string to;    // "SkylakeX"
};

// When LibTorch's BLAS is a DYNAMIC_ARCH OpenBLAS running kernels of an older level than
// cpu_simd_level(), and OPENBLAS_CORETYPE is unset or empty (a user's choice stands), sets it to
// openblas_kernels_for() and has OpenBLAS choose again, as it would have at load time with
// that variable. Call first thing in the process, before any BLAS call and any other thread.
// Returns what changed; nullopt when nothing did.
std::optional<OpenBlasKernelSwitch> use_best_openblas_kernels();

}  // namespace sdxl::util
