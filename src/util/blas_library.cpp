#include "sdxl_dreambooth/util/blas_library.h"

#include <ATen/Context.h>
#include <dlfcn.h>

#include <filesystem>

namespace sdxl::util {
namespace {

// The library that provides sgemm_, opened again (it is loaded already) so that its symbols and
// its dependencies' can be looked up: Debian's OpenBLAS libblas.so.3 is a thin wrapper over
// libopenblas.so.0. Looking in the process's global scope instead would misreport: with
// OpenBLAS's liblapack.so.3 loaded beside another libblas.so.3, OpenBLAS's symbols are visible
// although the products run on the other library.
class BlasHandle {
 public:
  explicit BlasHandle(void* gemm) {
    Dl_info info{};
    if (gemm != nullptr && dladdr(gemm, &info) != 0 && info.dli_fname != nullptr) {
      handle_ = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD);
    }
  }
  ~BlasHandle() {
    if (handle_ != nullptr) dlclose(handle_);
  }
  BlasHandle(const BlasHandle&) = delete;
  BlasHandle& operator=(const BlasHandle&) = delete;

  void* symbol(const char* name) const { return handle_ != nullptr ? dlsym(handle_, name) : nullptr; }
  template <typename F>
  F function(const char* name) const {
    return reinterpret_cast<F>(symbol(name));
  }

 private:
  void* handle_ = nullptr;
};

std::string shared_object_of(void* address) {
  Dl_info info{};
  if (address == nullptr || dladdr(address, &info) == 0 || info.dli_fname == nullptr) return {};
  std::error_code ec;
  // libblas.so.3 is a chain of alternatives symlinks; the target names the implementation.
  const auto resolved = std::filesystem::canonical(info.dli_fname, ec);
  return ec ? std::string(info.dli_fname) : resolved.string();
}

std::string without_trailing_space(const char* s) {
  std::string out = s != nullptr ? s : "";
  while (!out.empty() && (out.back() == ' ' || out.back() == '\n')) out.pop_back();
  return out;
}

}  // namespace

BlasLibrary blas_library() {
  BlasLibrary b;
  void* gemm = dlsym(RTLD_DEFAULT, "sgemm_");
  b.path = shared_object_of(gemm);
  const BlasHandle blas(gemm);
  b.optimized = true;
  if (auto config = blas.function<char* (*)()>("openblas_get_config")) {
    b.name = without_trailing_space(config());
    if (auto parallel = blas.function<int (*)()>("openblas_get_parallel")) {
      const int p = parallel();
      b.name += p == 2 ? " (OpenMP threads)" : p == 1 ? " (pthreads)" : " (single-threaded)";
    }
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
  if (!device.is_cpu() || blas.optimized) return std::nullopt;
  return "LibTorch's CPU matrix products run on " + (blas.path.empty() ? blas.name : blas.path) +
         ", not an optimized BLAS: a training step runs 3-17x slower than with OpenBLAS (docs/benchmarks.md). "
         "On Debian: apt-get install libopenblas0-openmp (it becomes libblas.so.3)";
}

}  // namespace sdxl::util
