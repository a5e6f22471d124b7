#include "sdxl_dreambooth/dist/device_collectives.h"

#include "sdxl_dreambooth/error.h"

#include <sstream>

namespace sdxl::dist {

DeviceBuffer DeviceCollectives::buffer(std::int64_t numel, torch::ScalarType dtype) const {
  return DeviceBuffer(torch::zeros({numel}, torch::TensorOptions().dtype(dtype).device(device())));
}

void DeviceCollectives::check(const DeviceBuffer& buffer, const char* what) const {
  const torch::Tensor& t = buffer.tensor();
  // Device equality includes the index: cuda:1 is not this rank's cuda:0.
  if (t.defined() && t.device() == device() && t.is_contiguous()) return;
  std::ostringstream s;
  s << "internal: [rank " << rank() << "] device collective '" << what << "' got ";
  if (!t.defined()) {
    s << "no tensor";
  } else {
    s << (t.is_contiguous() ? "a tensor" : "a non-contiguous tensor") << " on " << t.device();
  }
  s << "; this rank's collectives take contiguous tensors on " << device();
  throw Error(s.str());
}

#ifndef SDXL_WITH_NCCL
bool nccl_backend_built() { return false; }
std::string collective_library_versions() { return {}; }

std::unique_ptr<DeviceCollectives> make_nccl_device_collectives(HostCollectives&, MPI_Comm, int, double,
                                                                CollectiveLog*) {
  throw UsageError("distributed.backend = \"nccl\": this binary was built without NCCL",
                   "rebuild with -DSDXL_WITH_NCCL=ON (needs nccl.h and libnccl), or use backend \"mpi\"");
}
#endif

}  // namespace sdxl::dist
