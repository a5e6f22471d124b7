// The collectives of one rank's job: host collectives (always MPI) for host data and device
// collectives (NCCL, or MPI) for tensors on the training device. Every call is issued at every
// world size, one rank included, so one GPU runs exactly the calls eight run, and the CPU tests
// at 1 and 2 ranks cover the same code paths (docs/distributed.md).
#pragma once

#include "sdxl_dreambooth/dist/collective_log.h"
#include "sdxl_dreambooth/dist/device_collectives.h"
#include "sdxl_dreambooth/dist/host_collectives.h"

#include <mpi.h>
#include <torch/torch.h>

#include <memory>
#include <string>

namespace sdxl::dist {

struct CollectiveOptions {
  std::string backend = "mpi";           // "mpi" | "nccl" (resolved, not "auto")
  torch::Device device = torch::kCPU;    // the rank's training device
  double timeout_s = 600;                // distributed.timeout_s
  CollectiveLog::Sink debug_sink;        // SDXL_DISTRIBUTED_DEBUG=detail: where each call is logged
};

class Collectives {
 public:
  Collectives(std::unique_ptr<CollectiveLog> log, std::unique_ptr<HostCollectives> host,
              std::unique_ptr<DeviceCollectives> device);
  ~Collectives();
  Collectives(const Collectives&) = delete;
  Collectives& operator=(const Collectives&) = delete;

  HostCollectives& host() { return *host_; }
  DeviceCollectives& device() { return *device_; }
  const DeviceCollectives& device() const { return *device_; }
  int rank() const { return host_->rank(); }
  int world_size() const { return host_->world_size(); }
  std::string backend() const { return device_->backend(); }
  void set_context(std::string context) { host_->set_context(std::move(context)); }
  // Collectives issued so far (both kinds), for SDXL_DISTRIBUTED_DEBUG's summary and tests.
  std::uint64_t calls() const { return log_->calls(); }

 private:
  std::unique_ptr<CollectiveLog> log_;  // first: the others log into it until they are gone
  std::unique_ptr<HostCollectives> host_;
  std::unique_ptr<DeviceCollectives> device_;
};

// Host collectives over MPI on `comm` (not owned) and the device collectives `options` name.
std::unique_ptr<Collectives> make_collectives(MPI_Comm comm, const CollectiveOptions& options);

}  // namespace sdxl::dist
