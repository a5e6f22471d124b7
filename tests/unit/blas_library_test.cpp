// Which BLAS LibTorch's CPU matrix products run on, and the warning for an unoptimized one.
#include "sdxl_dreambooth/util/blas_library.h"

#include <gtest/gtest.h>

#include <filesystem>

using sdxl::util::BlasLibrary;
using sdxl::util::SimdLevel;
using sdxl::util::blas_library;
using sdxl::util::slow_blas_warning;

TEST(BlasLibrary, ThisProcessRunsOnOpenBlasWithOpenMpThreads) {
  // scripts/install-deps.sh installs libopenblas0-openmp; without it Debian's libblas.so.3 is
  // the reference implementation, and every CPU figure in docs/benchmarks.md changes.
  const BlasLibrary b = blas_library();
  EXPECT_TRUE(b.optimized) << b.name << ", " << b.path;
  EXPECT_EQ(b.name.rfind("OpenBLAS ", 0), 0u) << b.name;
  // The OpenMP build shares LibTorch's thread pool and OMP_NUM_THREADS; the pthreads one would
  // start threads of its own next to it. "(OpenMP threads; OPENBLAS_CORETYPE=…)" when the
  // kernels were chosen by that variable (some machines' environments set it).
  EXPECT_NE(b.name.find("(OpenMP threads"), std::string::npos) << b.name;
  EXPECT_TRUE(std::filesystem::is_regular_file(b.path)) << b.path;
}

TEST(BlasLibrary, WarnsAboutAnUnoptimizedBlasOnTheCpuOnly) {
  BlasLibrary reference;
  reference.name = "libblas.so.3 (not an optimized BLAS: the reference implementation?)";
  reference.path = "/usr/lib/x86_64-linux-gnu/blas/libblas.so.3";
  reference.optimized = false;
  const auto w = slow_blas_warning(reference, c10::Device(c10::kCPU));
  ASSERT_TRUE(w.has_value());
  EXPECT_NE(w->find(reference.path), std::string::npos) << *w;
  EXPECT_NE(w->find("apt-get install libopenblas0-openmp"), std::string::npos) << *w;
  EXPECT_FALSE(slow_blas_warning(reference, c10::Device(c10::kCUDA, 0)).has_value()) << "a GPU run uses no CPU BLAS";

  BlasLibrary openblas;
  openblas.name = "OpenBLAS 0.3.21 (OpenMP threads)";
  openblas.path = "/usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3";
  openblas.optimized = true;
  EXPECT_FALSE(slow_blas_warning(openblas, c10::Device(c10::kCPU)).has_value());
}

TEST(BlasLibrary, WarnsAboutOpenBlasKernelsOlderThanTheCpu) {
  BlasLibrary openblas;
  openblas.name = "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY USE_OPENMP Prescott MAX_THREADS=64";
  openblas.optimized = true;
  openblas.kernels = "Prescott";
  openblas.kernel_level = SimdLevel::sse3;
  openblas.cpu_level = SimdLevel::avx512;
  auto w = slow_blas_warning(openblas, c10::Device(c10::kCPU));
  ASSERT_TRUE(w.has_value());
  EXPECT_NE(w->find("Prescott kernels (SSE3) on a CPU with AVX-512"), std::string::npos) << *w;
  EXPECT_NE(w->find("Set OPENBLAS_CORETYPE=SkylakeX"), std::string::npos) << *w;
  EXPECT_FALSE(slow_blas_warning(openblas, c10::Device(c10::kCUDA, 0)).has_value());

  openblas.coretype_variable = "prescott";  // the user's choice: say it was theirs
  w = slow_blas_warning(openblas, c10::Device(c10::kCPU));
  ASSERT_TRUE(w.has_value());
  EXPECT_NE(w->find("OPENBLAS_CORETYPE=prescott chose them: unset it or set it to SkylakeX"), std::string::npos) << *w;

  openblas.cpu_level = SimdLevel::avx2;
  openblas.kernels = "Haswell";
  openblas.kernel_level = SimdLevel::avx2;
  EXPECT_FALSE(slow_blas_warning(openblas, c10::Device(c10::kCPU)).has_value());
  openblas.kernels = "SkylakeX";  // newer than the CPU: OpenBLAS would not run it; not ours to judge
  openblas.kernel_level = SimdLevel::avx512;
  EXPECT_FALSE(slow_blas_warning(openblas, c10::Device(c10::kCPU)).has_value());
  openblas.kernels = "NEOVERSEN1";
  openblas.kernel_level = SimdLevel::unknown;
  EXPECT_FALSE(slow_blas_warning(openblas, c10::Device(c10::kCPU)).has_value());
}
