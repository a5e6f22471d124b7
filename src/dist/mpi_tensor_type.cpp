#include "sdxl_dreambooth/dist/mpi_tensor_type.h"

#include "sdxl_dreambooth/error.h"

namespace sdxl::dist {

MPI_Datatype mpi_tensor_type(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat: return MPI_FLOAT;
    case torch::kDouble: return MPI_DOUBLE;
    case torch::kLong: return MPI_INT64_T;
    case torch::kInt: return MPI_INT32_T;
    case torch::kByte: return MPI_UINT8_T;
    default: break;
  }
  throw Error(std::string("MPI collectives: unsupported dtype ") + c10::toString(t.scalar_type()));
}

}  // namespace sdxl::dist
