#include "sdxl_dreambooth/build_features.h"

#include "sdxl_dreambooth/build_info.h"
#include "sdxl_dreambooth/nn/geglu_product.h"
#include "sdxl_dreambooth/torch_compat.h"
#include "sdxl_dreambooth/util/blas_library.h"

#include <hdf5.h>
#include <mpi.h>
#ifdef SDXL_WITH_NCCL
#include <nccl.h>
#endif

namespace sdxl {

BuildFeatures build_features() {
  BuildFeatures f;
  f.program_version = SDXL_VERSION_STRING;
  f.git_commit = SDXL_GIT_COMMIT;
  f.torch_version = compat::torch_version();
  f.torch_cuda_built = torch::cuda::is_available() || at::hasCUDA();
  f.cuda_device_count = static_cast<int>(torch::cuda::device_count());
  f.fused_kernels_built = nn::geglu_kernels_built();
#ifdef SDXL_WITH_NCCL
  f.nccl_built = true;
  int v = 0;
  if (ncclGetVersion(&v) == ncclSuccess) {
    // NCCL >= 2.9 encodes major*10000 + minor*100 + patch.
    f.nccl_version = std::to_string(v / 10000) + "." + std::to_string((v % 10000) / 100) + "." + std::to_string(v % 100);
  }
#endif
  char lib[MPI_MAX_LIBRARY_VERSION_STRING] = {0};
  int len = 0;
  // Callable before MPI_Init by the standard.
  if (MPI_Get_library_version(lib, &len) == MPI_SUCCESS) {
    std::string s(lib, static_cast<std::size_t>(len));
    f.mpi_library = s.substr(0, s.find_first_of(",\n"));
  }
  unsigned maj = 0, min = 0, rel = 0;
  if (H5get_libversion(&maj, &min, &rel) >= 0) {
    f.hdf5_version = std::to_string(maj) + "." + std::to_string(min) + "." + std::to_string(rel);
  }
  const util::BlasLibrary blas = util::blas_library();
  f.blas = blas.name + (blas.path.empty() ? "" : ", " + blas.path);
  return f;
}

}  // namespace sdxl
