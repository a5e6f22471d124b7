#include "sdxl_dreambooth/build_features.h"
#include "sdxl_dreambooth/cli/args.h"
#include "sdxl_dreambooth/cli/command.h"

#include <iostream>

namespace sdxl::cli {

Command make_version_command() {
  Command c;
  c.name = "version";
  c.summary = "program version, git commit, LibTorch, CUDA/NCCL, MPI, HDF5 and BLAS libraries";
  c.help =
      "usage: sdxl-dreambooth version\n\n"
      "Prints the program version and git commit, the LibTorch version, whether CUDA is built\n"
      "and how many GPUs are visible (and whether the fused CUDA kernels of train.fused_kernels are\n"
      "built), whether the NCCL backend is compiled in, and the MPI and\n"
      "HDF5 libraries, and the BLAS that LibTorch's CPU matrix products run on. Include it in\n"
      "bug reports.\n";
  c.run = [](const std::vector<std::string>& argv) {
    Args args(argv, {}, {});
    const BuildFeatures f = build_features();
    std::cout << "sdxl-dreambooth " << f.program_version << " (commit " << f.git_commit << ")\n"
              << "LibTorch:  " << f.torch_version << (f.torch_cuda_built ? " with CUDA" : " (CPU)") << "\n"
              << "CUDA:      " << (f.cuda_device_count > 0 ? std::to_string(f.cuda_device_count) + " device(s) visible"
                                                             : std::string("no device visible"))
              << (f.fused_kernels_built ? ", fused kernels built" : "") << "\n"
              << "NCCL:      " << (f.nccl_built ? "backend built, NCCL " + f.nccl_version : std::string("not built"))
              << "\n"
              << "MPI:       " << f.mpi_library << "\n"
              << "HDF5:      " << f.hdf5_version << "\n"
              << "BLAS:      " << f.blas << "\n";
    return 0;
  };
  return c;
}

}  // namespace sdxl::cli
