#include "sdxl_dreambooth/util/blas_library.h"

#include "sdxl_dreambooth/util/shared_object.h"
#include "sdxl_dreambooth/util/strings.h"

#include <ATen/Context.h>

#include <cstdlib>
#include <filesystem>
#include <vector>

namespace sdxl::util {
namespace {

std::string without_trailing_space(const char* s) {
  std::string out = s != nullptr ? s : "";
  while (!out.empty() && (out.back() == ' ' || out.back() == '\n')) out.pop_back();
  return out;
}

}  // namespace

BlasLibrary blas_library() {
  BlasLibrary b;
  void* gemm = blas_gemm_symbol();
  b.path = shared_object_path(gemm);
  const SharedObject blas(gemm);
  b.optimized = true;
  if (auto config = blas.function<char* (*)()>("openblas_get_config")) {
    b.name = without_trailing_space(config());
    std::vector<std::string> notes;
    if (auto parallel = blas.function<int (*)()>("openblas_get_parallel")) {
      const int p = parallel();
      notes.push_back(p == 2 ? "OpenMP threads" : p == 1 ? "pthreads" : "single-threaded");
    }
    b.kernels = openblas_kernels();
    b.kernel_level = openblas_kernel_level(b.kernels);
    b.cpu_level = cpu_simd_level();
    if (const char* v = std::getenv("OPENBLAS_CORETYPE"); v != nullptr && *v != '\0' && !b.kernels.empty()) {
      b.coretype_variable = v;
      notes.push_back("OPENBLAS_CORETYPE=" + b.coretype_variable);
    }
    if (!notes.empty()) b.name += " (" + join(notes, "; ") + ")";
    return b;
  }
  if (auto version = blas.function<const char* (*)()>("bli_info_get_version_str")) {
    b.name = "BLIS " + without_trailing_space(version());
    return b;
  }
  if (auto backend = blas.function<int (*)(char*, std::size_t)>("flexiblas_current_backend")) {
    char name[128] = {0};
    backend(name, sizeof name - 1);
    b.name = "FlexiBLAS (backend " + without_trailing_space(name) + ")";
    b.optimized = b.name.find("NETLIB") == std::string::npos;
    return b;
  }
  if (blas.symbol("ATL_buildinfo") != nullptr) {
    b.name = "ATLAS";
    return b;
  }
  if (at::hasMKL()) {
    b.name = "Intel MKL (in LibTorch)";
    return b;
  }
  b.optimized = false;
  b.name = b.path.empty() ? "none found"
                          : std::filesystem::path(b.path).filename().string() +
                                " (not an optimized BLAS: the reference implementation?)";
  return b;
}

std::optional<std::string> slow_blas_warning(const BlasLibrary& blas, const c10::Device& device) {
  if (!device.is_cpu()) return std::nullopt;
  if (blas.optimized) {
    if (blas.kernel_level == SimdLevel::unknown || blas.kernel_level >= blas.cpu_level) return std::nullopt;
    const std::string better = openblas_kernels_for(blas.cpu_level);
    return "OpenBLAS runs its " + blas.kernels + " kernels (" + std::string(simd_level_name(blas.kernel_level)) +
           ") on a CPU with " + std::string(simd_level_name(blas.cpu_level)) +
           ": its matrix products run up to 3x slower than with its " + better + " kernels (docs/benchmarks.md). " +
           (blas.coretype_variable.empty() ? "Set OPENBLAS_CORETYPE=" + better
                                           : "OPENBLAS_CORETYPE=" + blas.coretype_variable +
                                                 " chose them: unset it or set it to " + better);
  }
  return "LibTorch's CPU matrix products run on " + (blas.path.empty() ? blas.name : blas.path) +
         ", not an optimized BLAS: a training step runs 3-17x slower than with OpenBLAS (docs/benchmarks.md). "
         "On Debian: apt-get install libopenblas0-openmp (it becomes libblas.so.3)";
}

}  // namespace sdxl::util
