#include "sdxl_dreambooth/dist/device_collectives.h"

#include "sdxl_dreambooth/dist/mpi_runtime.h"
#include "sdxl_dreambooth/dist/mpi_tensor_type.h"
#include "sdxl_dreambooth/dist/mpi_wait.h"
#include "sdxl_dreambooth/error.h"

#include <limits>
#include <sstream>

namespace sdxl::dist {
namespace {

// MPI reduces host memory: a CPU buffer directly, a GPU one through a host copy (the GPU's
// queued work finishes first; this backend waits for the device, NCCL's does not).
class MpiDeviceCollectives final : public DeviceCollectives {
 public:
  MpiDeviceCollectives(HostCollectives& host, MPI_Comm comm, const torch::Device& device, double timeout_s,
                       CollectiveLog* log)
      : DeviceCollectives(host), comm_(comm), device_(device), timeout_s_(timeout_s), log_(log) {
    std::ostringstream d;
    d << device_;
    device_name_ = d.str();
  }
  std::string backend() const override { return "mpi"; }
  torch::Device device() const override { return device_; }

  void all_reduce_sum(DeviceBuffer& buffer, const char* what) override {
    check(buffer, what);
    run(buffer, "all-reduce sum", what, [&](void* data, int n, MPI_Datatype type, MPI_Request* req) {
      return MPI_Iallreduce(MPI_IN_PLACE, data, n, type, MPI_SUM, comm_, req);
    });
  }

  void broadcast(DeviceBuffer& buffer, int root, const char* what) override {
    check(buffer, what);
    run(buffer, "broadcast", what, [&](void* data, int n, MPI_Datatype type, MPI_Request* req) {
      return MPI_Ibcast(data, n, type, root, comm_, req);
    });
  }

 private:
  template <class Start>
  void run(DeviceBuffer& buffer, const char* op, const char* what, Start start) {
    const torch::Tensor& t = buffer.tensor();
    if (t.numel() > std::numeric_limits<int>::max()) {
      throw Error(std::string("device collective ") + what + ": " + std::to_string(t.numel()) +
                  " elements, over MPI's int count");
    }
    const bool staged = !t.device().is_cpu();
    if (log_) {
      log_->record({staged ? "mpi via host" : "mpi", op, what, &host_.context(), dtype_name(t.scalar_type()),
                    device_name_, t.numel()});
    }
    torch::Tensor host = staged ? t.to(torch::kCPU) : t;
    MPI_Request req;
    check_mpi(start(host.data_ptr(), static_cast<int>(host.numel()), mpi_tensor_type(host), &req), what);
    wait_with_deadline(req, comm_, timeout_s_, what, host_.context());
    if (staged) t.copy_(host);
  }

  MPI_Comm comm_;
  torch::Device device_;
  std::string device_name_;
  double timeout_s_;
  CollectiveLog* log_;
};

}  // namespace

std::unique_ptr<DeviceCollectives> make_mpi_device_collectives(HostCollectives& host, MPI_Comm comm,
                                                               const torch::Device& device, double timeout_s,
                                                               CollectiveLog* log) {
  return std::make_unique<MpiDeviceCollectives>(host, comm, device, timeout_s, log);
}

}  // namespace sdxl::dist
