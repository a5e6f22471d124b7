// What this binary was built with and what it finds at run time, for `version`,
// checkpoint provenance and bug reports.
#pragma once

#include <string>

namespace sdxl {

struct BuildFeatures {
  std::string program_version;
  std::string git_commit;
  std::string torch_version;
  bool torch_cuda_built = false;  // LibTorch was built with CUDA
  int cuda_device_count = 0;      // GPUs visible now
  bool nccl_built = false;        // the NCCL collective backend is compiled in
  bool fused_kernels_built = false;  // the project's CUDA kernels (train.fused_kernels)
  std::string nccl_version;       // "2.28.3", or "" when not built
  std::string mpi_library;        // first line of MPI_Get_library_version
  std::string hdf5_version;
  std::string blas;  // LibTorch's CPU BLAS and its file (util/blas_library.h)
};

BuildFeatures build_features();

}  // namespace sdxl
