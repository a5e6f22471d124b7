// NCCL backend (compiled only when SDXL_WITH_NCCL; CMake leaves nccl_*.cpp out otherwise).
#include "sdxl_dreambooth/dist/collective_watchdog.h"
#include "sdxl_dreambooth/dist/collectives.h"
#include "sdxl_dreambooth/dist/mpi_runtime.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/torch_compat.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <memory>
#include <thread>
#include <vector>

namespace sdxl::dist {
namespace {

void check_cuda(cudaError_t rc, const char* call) {
  if (rc != cudaSuccess) throw Error(std::string(call) + " failed: " + cudaGetErrorString(rc));
}

// A CUDA event, created without timing (the cheap kind), destroyed with its owner.
class CudaEvent {
 public:
  CudaEvent() { check_cuda(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming), "cudaEventCreateWithFlags"); }
  ~CudaEvent() {
    if (event_) cudaEventDestroy(event_);
  }
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;

  void record(cudaStream_t stream) { check_cuda(cudaEventRecord(event_, stream), "cudaEventRecord"); }
  Progress query(std::string* why) const {
    // The watchdog's thread asks. While the training thread records a CUDA graph
    // (train.cuda_graphs), CUDA's default mode refuses such calls from every thread and breaks
    // the recording; this event is outside any recording, so this thread opts out, as PyTorch's
    // NCCL watchdog does.
    cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
    cudaThreadExchangeStreamCaptureMode(&mode);
    const cudaError_t rc = cudaEventQuery(event_);
    cudaThreadExchangeStreamCaptureMode(&mode);
    if (rc == cudaSuccess) return Progress::kDone;
    if (rc == cudaErrorNotReady) return Progress::kPending;
    *why = std::string("cudaEventQuery: ") + cudaGetErrorString(rc);
    return Progress::kFailed;
  }

 private:
  cudaEvent_t event_ = nullptr;
};

ncclDataType_t nccl_type(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat: return ncclFloat32;
    case torch::kDouble: return ncclFloat64;
    case torch::kHalf: return ncclFloat16;
    case torch::kBFloat16: return ncclBfloat16;
    case torch::kLong: return ncclInt64;
    case torch::kByte: return ncclUint8;
    default: break;
  }
  throw Error(std::string("NCCL collectives: unsupported dtype ") + c10::toString(t.scalar_type()));
}

class NcclCollectives final : public Collectives {
 public:
  NcclCollectives(MPI_Comm comm, int device, double timeout_s)
      : host_(make_mpi_collectives(comm, timeout_s)), comm_(comm), device_(device), timeout_s_(timeout_s) {
    rank_ = host_->rank();
    size_ = host_->world_size();
    check_cuda(cudaSetDevice(device_), "cudaSetDevice");
    refuse_shared_gpus();
    ncclUniqueId id;
    if (rank_ == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    check_mpi(MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, comm_), "MPI_Bcast(ncclUniqueId)");
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;  // every wait below has a deadline
    const ncclResult_t rc = ncclCommInitRankConfig(&nccl_, size_, id, rank_, &config);
    if (rc != ncclSuccess && rc != ncclInProgress) check_nccl(rc, "ncclCommInitRankConfig");
    wait_comm_ready("ncclCommInitRankConfig");
    watchdog_ = std::make_unique<CollectiveWatchdog>(
        timeout_s_, [this](const WatchedCollective& c, const std::string& why) { watchdog_abort(c, why); },
        [this] { return async_error(); },
        [this] { check_cuda(cudaSetDevice(device_), "cudaSetDevice (collective watchdog)"); });
  }

  ~NcclCollectives() override {
    // A normal end has read its results back, so nothing is pending. While an exception
    // unwinds, a peer may never join what is queued: abort the communicator instead of waiting.
    const bool idle = std::uncaught_exceptions() == 0 && watchdog_ && watchdog_->wait_idle(timeout_s_);
    watchdog_.reset();  // its thread polls nccl_: stop it first
    if (!nccl_) return;
    if (idle) {
      ncclCommDestroy(nccl_);
    } else {
      ncclCommAbort(nccl_);
    }
  }

  int rank() const override { return rank_; }
  int world_size() const override { return size_; }
  std::string backend() const override { return "nccl"; }
  torch::Device device() const override { return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(device_)); }

  // Both are queued on LibTorch's current stream, behind the kernels that produce `t` and ahead
  // of those that read it, and return at once: the host never waits for the device here. The
  // watchdog keeps the deadline (from when the device reaches the collective) on its thread.
  void all_reduce_sum(torch::Tensor& t, const char* what) override {
    check_device(t, what);
    enqueue(what, [&](cudaStream_t stream) {
      return ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), nccl_type(t), ncclSum, nccl_,
                           stream);
    });
  }

  void broadcast(torch::Tensor& t, int root, const char* what) override {
    check_device(t, what);
    enqueue(what, [&](cudaStream_t stream) {
      return ncclBroadcast(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), nccl_type(t), root, nccl_,
                           stream);
    });
  }

  // Set-up and validation only: small, uneven shares; through MPI on the host.
  torch::Tensor all_gather_rows(const torch::Tensor& t, const char* what) override {
    host_->set_context(context());
    return host_->all_gather_rows(t.to(torch::kCPU), what).to(t.device());
  }
  double all_reduce_max(double v, const char* what) override {
    host_->set_context(context());
    return host_->all_reduce_max(v, what);
  }
  double all_reduce_min(double v, const char* what) override {
    host_->set_context(context());
    return host_->all_reduce_min(v, what);
  }

 private:
  // Two ranks of one communicator on the same GPU may hang NCCL: compare (host, PCI bus id) of
  // every rank's device and stop with a clear error instead.
  void refuse_shared_gpus() {
    char bus[64] = {0};
    check_cuda(cudaDeviceGetPCIBusId(bus, sizeof bus, device_), "cudaDeviceGetPCIBusId");
    char host[MPI_MAX_PROCESSOR_NAME] = {0};
    int len = 0;
    check_mpi(MPI_Get_processor_name(host, &len), "MPI_Get_processor_name");
    const std::string key = std::string(host) + " " + bus;
    const std::vector<std::string> all = all_gather_strings(comm_, key);
    for (int r = 0; r < size_; ++r) {
      if (r != rank_ && all[static_cast<std::size_t>(r)] == key) {
        throw UsageError("ranks " + std::to_string(std::min(r, rank_)) + " and " + std::to_string(std::max(r, rank_)) +
                             " would share GPU " + bus + " on " + host + "; NCCL needs one GPU per rank",
                         "start as many ranks per node as GPUs (--ntasks-per-node / --gpus-per-task)");
      }
    }
  }

  void check_nccl(ncclResult_t rc, const char* call) const {
    if (rc != ncclSuccess) {
      throw Error("[rank " + std::to_string(rank_) + "] " + call + " failed: " + ncclGetErrorString(rc) + " (" +
                  ncclGetLastError(nccl_) + ")");
    }
  }

  void check_device(const torch::Tensor& t, const char* what) const {
    if (!t.is_cuda() || !t.is_contiguous()) {
      throw Error(std::string("internal: NCCL collective ") + what + " needs a contiguous CUDA tensor");
    }
  }

  template <class Launch>
  void enqueue(const char* what, Launch launch) {
    const auto stream = static_cast<cudaStream_t>(compat::current_cuda_stream(device_));
    auto started = std::make_shared<CudaEvent>();
    auto finished = std::make_shared<CudaEvent>();
    started->record(stream);
    const ncclResult_t rc = launch(stream);
    if (rc != ncclSuccess && rc != ncclInProgress) check_nccl(rc, what);
    wait_comm_ready(what);  // a non-blocking communicator may still be queuing it (host side)
    finished->record(stream);
    watchdog_->watch(WatchedCollective{what, context(), [started](std::string* why) { return started->query(why); },
                                       [finished](std::string* why) { return finished->query(why); }});
  }

  // The communicator's asynchronous error, polled by the watchdog (ncclCommGetAsyncError is
  // meant to be called from such a thread); empty when there is none.
  std::string async_error() const {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t rc = ncclCommGetAsyncError(nccl_, &state);
    if (rc != ncclSuccess) return std::string("ncclCommGetAsyncError: ") + ncclGetErrorString(rc);
    if (state != ncclSuccess && state != ncclInProgress) return ncclGetErrorString(state);
    return {};
  }

  // On the watchdog's thread, where MPI may not be called (MPI_THREAD_FUNNELED): abort the
  // communicator, which frees whatever waits on it, and exit; the launcher ends the other ranks
  // (docs/distributed.md).
  [[noreturn]] void watchdog_abort(const WatchedCollective& c, const std::string& why) {
    std::fprintf(stderr, "error: [rank %d/%d] NCCL collective '%s' at %s: %s; aborting the job\n", rank_, size_,
                 c.what.c_str(), c.context.c_str(), why.c_str());
    std::fflush(stderr);
    if (nccl_) ncclCommAbort(nccl_);
    std::_Exit(static_cast<int>(kExitFailure));
  }

  [[noreturn]] void abort_job(const char* what, const std::string& why) {
    std::fprintf(stderr, "error: [rank %d/%d] NCCL collective '%s' at %s: %s; aborting the job\n", rank_, size_, what,
                 context().c_str(), why.c_str());
    std::fflush(stderr);
    watchdog_.reset();  // its thread polls nccl_
    if (nccl_) ncclCommAbort(nccl_);
    nccl_ = nullptr;
    MPI_Abort(comm_, 1);
    std::_Exit(1);
  }

  void wait_comm_ready(const char* what) {
    const auto start = std::chrono::steady_clock::now();
    for (;;) {
      ncclResult_t state = ncclSuccess;
      check_nccl(ncclCommGetAsyncError(nccl_, &state), "ncclCommGetAsyncError");
      if (state == ncclSuccess) return;
      if (state != ncclInProgress) abort_job(what, ncclGetErrorString(state));
      if (seconds_since(start) > timeout_s_) abort_job(what, "not ready within distributed.timeout_s");
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  static double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  }

  std::unique_ptr<Collectives> host_;
  MPI_Comm comm_;
  int device_;
  double timeout_s_;
  int rank_ = 0, size_ = 1;
  ncclComm_t nccl_ = nullptr;
  std::unique_ptr<CollectiveWatchdog> watchdog_;
};

}  // namespace

bool nccl_backend_built() { return true; }

std::unique_ptr<Collectives> make_nccl_collectives(MPI_Comm comm, int device, double timeout_s) {
  return std::make_unique<NcclCollectives>(comm, device, timeout_s);
}

}  // namespace sdxl::dist
