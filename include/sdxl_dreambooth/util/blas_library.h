// Which BLAS LibTorch's CPU matrix products run on. Debian's libtorch links libblas.so.3,
// which the alternatives system points at the reference (netlib) implementation unless an
// optimized one is installed; on the reference BLAS a CPU training step of SDXL's UNet was 17×
// slower than on OpenBLAS (docs/benchmarks.md), so `version`, `bench` and CPU runs say which
// one they got.
#pragma once

#include "sdxl_dreambooth/util/openblas_kernels.h"

#include <c10/core/Device.h>

#include <optional>
#include <string>

namespace sdxl::util {

struct BlasLibrary {
  // "OpenBLAS 0.3.21 NO_AFFINITY USE_OPENMP ZEN MAX_THREADS=64 (OpenMP threads)", "BLIS 0.9.0",
  // "FlexiBLAS (backend OPENBLAS-OPENMP)", "ATLAS", "Intel MKL (in LibTorch)", "libblas.so.3
  // (not an optimized BLAS: the reference implementation?)" or "none found".
  std::string name;
  std::string path;        // the shared object that provides sgemm_; "" when none is visible
  bool optimized = false;  // a library recognised as an optimized BLAS
  // A DYNAMIC_ARCH OpenBLAS's kernel family ("SkylakeX") and its level; "" and unknown otherwise.
  std::string kernels;
  SimdLevel kernel_level = SimdLevel::unknown;
  SimdLevel cpu_level = SimdLevel::unknown;  // what this CPU can run
  std::string coretype_variable;             // OPENBLAS_CORETYPE, "" when unset
};

BlasLibrary blas_library();

// What a run on `device` should warn about its BLAS: the message when the device is the CPU
// and the BLAS is not an optimized one or runs kernels older than the CPU can (see
// openblas_kernels.h), nullopt otherwise.
std::optional<std::string> slow_blas_warning(const BlasLibrary& blas, const c10::Device& device);

}  // namespace sdxl::util
