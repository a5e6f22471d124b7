#include "sdxl_dreambooth/util/openblas_kernels.h"

#include "sdxl_dreambooth/util/shared_object.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdlib>
#include <utility>

namespace sdxl::util {
namespace {

bool same_name(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// OpenBLAS's x86-64 families (driver/others/dynamic.c), by the vector extension their GEMM
// kernels use.
constexpr std::array<std::pair<std::string_view, SimdLevel>, 27> kFamilies{{
    {"SkylakeX", SimdLevel::avx512},     {"Cooperlake", SimdLevel::avx512}, {"SapphireRapids", SimdLevel::avx512},
    {"Haswell", SimdLevel::avx2},        {"Zen", SimdLevel::avx2},          {"Excavator", SimdLevel::avx2},
    {"Dhyana", SimdLevel::avx2},         {"Sandybridge", SimdLevel::avx},   {"Bulldozer", SimdLevel::avx},
    {"Piledriver", SimdLevel::avx},      {"Steamroller", SimdLevel::avx},   {"Katmai", SimdLevel::sse3},
    {"Coppermine", SimdLevel::sse3},     {"Northwood", SimdLevel::sse3},    {"Prescott", SimdLevel::sse3},
    {"Banias", SimdLevel::sse3},         {"Atom", SimdLevel::sse3},         {"Core2", SimdLevel::sse3},
    {"Penryn", SimdLevel::sse3},         {"Dunnington", SimdLevel::sse3},   {"Nehalem", SimdLevel::sse3},
    {"Athlon", SimdLevel::sse3},         {"Opteron", SimdLevel::sse3},      {"Opteron_SSE3", SimdLevel::sse3},
    {"Barcelona", SimdLevel::sse3},      {"Nano", SimdLevel::sse3},         {"Bobcat", SimdLevel::sse3},
}};

struct OpenBlasDynamicArch {
  char* (*corename)() = nullptr;
  void (*init)() = nullptr;
  void (*quit)() = nullptr;
};

// The entry points of a DYNAMIC_ARCH OpenBLAS: gotoblas_dynamic_init is what its load-time
// constructor calls to choose the family (reading OPENBLAS_CORETYPE), and _quit forgets it.
OpenBlasDynamicArch dynamic_arch(const SharedObject& blas) {
  OpenBlasDynamicArch d;
  d.corename = blas.function<char* (*)()>("openblas_get_corename");
  d.init = blas.function<void (*)()>("gotoblas_dynamic_init");
  d.quit = blas.function<void (*)()>("gotoblas_dynamic_quit");
  return d;
}

}  // namespace

std::string_view simd_level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::sse3: return "SSE3";
    case SimdLevel::avx: return "AVX";
    case SimdLevel::avx2: return "AVX2";
    case SimdLevel::avx512: return "AVX-512";
    case SimdLevel::unknown: break;
  }
  return "unknown";
}

SimdLevel cpu_simd_level() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  // libgcc's checks include the operating system's XSAVE state (XCR0), not only CPUID.
  __builtin_cpu_init();
  // SkylakeX's kernels use F, CD, BW, DQ and VL.
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl")) {
    return SimdLevel::avx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return SimdLevel::avx2;
  if (__builtin_cpu_supports("avx")) return SimdLevel::avx;
  if (__builtin_cpu_supports("sse3")) return SimdLevel::sse3;
#endif
  return SimdLevel::unknown;
}

SimdLevel openblas_kernel_level(std::string_view core) {
  for (const auto& [name, level] : kFamilies) {
    if (same_name(name, core)) return level;
  }
  return SimdLevel::unknown;
}

std::string openblas_kernels_for(SimdLevel level) {
  switch (level) {
    case SimdLevel::avx512: return "SkylakeX";
    case SimdLevel::avx2: return "Haswell";
    case SimdLevel::avx: return "Sandybridge";
    case SimdLevel::sse3:
    case SimdLevel::unknown: break;
  }
  return {};
}

std::string openblas_kernels() {
  const SharedObject blas(blas_gemm_symbol());
  const OpenBlasDynamicArch d = dynamic_arch(blas);
  if (d.corename == nullptr || d.init == nullptr) return {};
  const char* name = d.corename();
  return name != nullptr ? name : "";
}

std::optional<OpenBlasKernelSwitch> use_best_openblas_kernels() {
  // Set and not empty: the user's choice, made at load time.
  if (const char* v = std::getenv("OPENBLAS_CORETYPE"); v != nullptr && *v != '\0') return std::nullopt;
  const SharedObject blas(blas_gemm_symbol());
  const OpenBlasDynamicArch d = dynamic_arch(blas);
  if (d.corename == nullptr || d.init == nullptr || d.quit == nullptr || d.corename() == nullptr) return std::nullopt;
  const std::string from = d.corename();
  const SimdLevel running = openblas_kernel_level(from);
  const SimdLevel cpu = cpu_simd_level();
  const std::string wanted = openblas_kernels_for(cpu);
  if (running == SimdLevel::unknown || running >= cpu || wanted.empty()) return std::nullopt;
  // The variable stays set: it is what OpenBLAS documents for this, says what was chosen, and
  // processes started from this one choose the same.
  if (setenv("OPENBLAS_CORETYPE", wanted.c_str(), 1) != 0) return std::nullopt;
  d.quit();
  d.init();
  const char* now = d.corename();
  if (now != nullptr && openblas_kernel_level(now) > running) return OpenBlasKernelSwitch{from, now};
  // This OpenBLAS does not have the family: back to its own choice.
  unsetenv("OPENBLAS_CORETYPE");
  d.quit();
  d.init();
  return std::nullopt;
}

}  // namespace sdxl::util
