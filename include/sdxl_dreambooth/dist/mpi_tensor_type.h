// The MPI datatype of a tensor's elements, for the MPI collectives of both kinds.
#pragma once

#include <mpi.h>
#include <torch/torch.h>

namespace sdxl::dist {

// float32, float64, int64, int32, uint8; throws Error naming the dtype otherwise.
MPI_Datatype mpi_tensor_type(const torch::Tensor& t);

}  // namespace sdxl::dist
