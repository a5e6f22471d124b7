#include "sdxl_dreambooth/dist/collectives.h"

#include "sdxl_dreambooth/error.h"

namespace sdxl::dist {

Collectives::Collectives(std::unique_ptr<CollectiveLog> log, std::unique_ptr<HostCollectives> host,
                         std::unique_ptr<DeviceCollectives> device)
    : log_(std::move(log)), host_(std::move(host)), device_(std::move(device)) {}

Collectives::~Collectives() {
  device_.reset();  // it refers to the host collectives
  host_.reset();
}

std::unique_ptr<Collectives> make_collectives(MPI_Comm comm, const CollectiveOptions& o) {
  auto log = std::make_unique<CollectiveLog>(o.debug_sink);
  auto host = make_mpi_host_collectives(comm, o.timeout_s, log.get());
  std::unique_ptr<DeviceCollectives> device;
  if (o.backend == "nccl") {
    if (!o.device.is_cuda()) throw Error("internal: the NCCL collectives need a CUDA training device");
    device = make_nccl_device_collectives(*host, comm, o.device.has_index() ? o.device.index() : 0, o.timeout_s,
                                          log.get());
  } else if (o.backend == "mpi") {
    device = make_mpi_device_collectives(*host, comm, o.device, o.timeout_s, log.get());
  } else {
    throw Error("internal: unknown collective backend '" + o.backend + "'");
  }
  return std::make_unique<Collectives>(std::move(log), std::move(host), std::move(device));
}

}  // namespace sdxl::dist
