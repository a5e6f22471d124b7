// OpenBLAS's kernel families by vector extension, and the family to ask for on a CPU.
#include "sdxl_dreambooth/util/openblas_kernels.h"

#include <gtest/gtest.h>

using sdxl::util::SimdLevel;
using sdxl::util::cpu_simd_level;
using sdxl::util::openblas_kernel_level;
using sdxl::util::openblas_kernels;
using sdxl::util::openblas_kernels_for;

TEST(OpenBlasKernels, FamiliesByVectorExtension) {
  // As openblas_get_corename() spells them, and in any case (OPENBLAS_CORETYPE is matched so).
  EXPECT_EQ(openblas_kernel_level("SkylakeX"), SimdLevel::avx512);
  EXPECT_EQ(openblas_kernel_level("COOPERLAKE"), SimdLevel::avx512);
  EXPECT_EQ(openblas_kernel_level("sapphirerapids"), SimdLevel::avx512);
  EXPECT_EQ(openblas_kernel_level("Haswell"), SimdLevel::avx2);
  EXPECT_EQ(openblas_kernel_level("Zen"), SimdLevel::avx2);
  EXPECT_EQ(openblas_kernel_level("Sandybridge"), SimdLevel::avx);
  EXPECT_EQ(openblas_kernel_level("Prescott"), SimdLevel::sse3);
  EXPECT_EQ(openblas_kernel_level("Nehalem"), SimdLevel::sse3);
  // Other architectures and names this table does not know are left alone.
  EXPECT_EQ(openblas_kernel_level("NEOVERSEN1"), SimdLevel::unknown);
  EXPECT_EQ(openblas_kernel_level(""), SimdLevel::unknown);
  EXPECT_EQ(openblas_kernel_level("SkylakeXX"), SimdLevel::unknown);
  EXPECT_LT(SimdLevel::sse3, SimdLevel::avx512);
}

TEST(OpenBlasKernels, TheFamilyToAskForIsOfTheCpusLevel) {
  for (const SimdLevel level : {SimdLevel::avx, SimdLevel::avx2, SimdLevel::avx512}) {
    EXPECT_EQ(openblas_kernel_level(openblas_kernels_for(level)), level) << openblas_kernels_for(level);
  }
  EXPECT_EQ(openblas_kernels_for(SimdLevel::sse3), "") << "OpenBLAS's fallback is SSE3 already";
  EXPECT_EQ(openblas_kernels_for(SimdLevel::unknown), "");
}

TEST(OpenBlasKernels, ThisMachine) {
  // x86-64 with OpenBLAS's DYNAMIC_ARCH build (scripts/install-deps.sh); this test process does
  // not switch, so this is OpenBLAS's own choice.
  EXPECT_NE(cpu_simd_level(), SimdLevel::unknown);
  const std::string kernels = openblas_kernels();
  EXPECT_NE(openblas_kernel_level(kernels), SimdLevel::unknown) << "'" << kernels << "'";
}
