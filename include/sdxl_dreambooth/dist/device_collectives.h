// Collectives on training data: tensors on the rank's own training device (the gradient
// all-reduce, the restored adapters' broadcast). On CUDA builds they go through NCCL; on CPU,
// or with distributed.backend = "mpi", through MPI (a GPU tensor is then staged through host
// memory). They take only a DeviceBuffer, which only DeviceCollectives::buffer makes, on its
// device: host data cannot reach them by mistake (use HostCollectives for it), and a buffer of
// another rank's device or of another DeviceCollectives is refused with a clear error.
#pragma once

#include "sdxl_dreambooth/dist/host_collectives.h"

#include <mpi.h>
#include <torch/torch.h>

#include <memory>
#include <string>

namespace sdxl::dist {

class DeviceCollectives;

// A contiguous tensor on a DeviceCollectives' device. Its values may be read and written
// (copy_, narrow), the tensor itself not replaced.
class DeviceBuffer {
 public:
  const torch::Tensor& tensor() const { return tensor_; }

 private:
  friend class DeviceCollectives;
  explicit DeviceBuffer(torch::Tensor tensor) : tensor_(std::move(tensor)) {}
  torch::Tensor tensor_;
};

class DeviceCollectives {
 public:
  // `host` (not owned, outlives this) gives the rank, the world and the context.
  explicit DeviceCollectives(HostCollectives& host) : host_(host) {}
  virtual ~DeviceCollectives() = default;
  DeviceCollectives(const DeviceCollectives&) = delete;
  DeviceCollectives& operator=(const DeviceCollectives&) = delete;

  virtual std::string backend() const = 0;
  // The rank's training device: cpu, or cuda:N with N its own GPU.
  virtual torch::Device device() const = 0;
  int rank() const { return host_.rank(); }
  int world_size() const { return host_.world_size(); }

  // Zeros of `dtype` on device().
  DeviceBuffer buffer(std::int64_t numel, torch::ScalarType dtype) const;

  // In place over all ranks: the sum (float32/float64; bf16/fp16 on NCCL).
  virtual void all_reduce_sum(DeviceBuffer& buffer, const char* what) = 0;
  // In place: rank `root`'s contents on every rank.
  virtual void broadcast(DeviceBuffer& buffer, int root, const char* what) = 0;

 protected:
  // Throws Error naming the collective, the buffer's device and this rank's when `buffer` is
  // not a contiguous tensor on device().
  void check(const DeviceBuffer& buffer, const char* what) const;
  HostCollectives& host_;
};

// MPI on host memory: CPU tensors directly, a CUDA device's through a host copy.
std::unique_ptr<DeviceCollectives> make_mpi_device_collectives(HostCollectives& host, MPI_Comm comm,
                                                               const torch::Device& device, double timeout_s,
                                                               CollectiveLog* log);

// True when this binary was built with the NCCL backend (SDXL_WITH_NCCL).
bool nccl_backend_built();
// "NCCL 2.28.3 (built with 2.28.3), CUDA runtime 12.8, driver API 13.0": the libraries this
// process loaded, logged at start-up of NCCL runs; empty without NCCL.
std::string collective_library_versions();

// NCCL on GPU `device` for the ranks of `comm` (not owned): rank 0 creates the NCCL id and
// broadcasts it over `host`; the communicator is non-blocking so that every host wait has the
// `timeout_s` deadline. Collectives are queued on LibTorch's current stream and return without
// waiting for the device; a watchdog thread keeps their deadline from when the device reaches
// them (on error or timeout: a message naming rank, context and collective, then the process
// ends and the launcher ends the job). Throws a UsageError when NCCL was not built in.
std::unique_ptr<DeviceCollectives> make_nccl_device_collectives(HostCollectives& host, MPI_Comm comm, int device,
                                                                double timeout_s, CollectiveLog* log);

}  // namespace sdxl::dist
