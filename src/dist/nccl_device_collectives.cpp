// NCCL backend (compiled only when SDXL_WITH_NCCL; CMake leaves nccl_*.cpp out otherwise).
//
// Threads: the training thread issues every collective; the watchdog thread follows them on the
// device and polls the communicator's asynchronous error. NCCL forbids two threads in calls on
// one communicator at once (since 2.23 ncclCommGetAsyncError also reaps the group jobs of a
// non-blocking communicator), so every call on it holds `comm_mutex_`; the watchdog only
// try-locks and skips a poll while the training thread is in a call, as PyTorch's
// ProcessGroupNCCL does. The communicator stays non-blocking so that each host-side wait (its
// creation, a lazily connected first collective) keeps the deadline on the calling thread
// instead of depending on an abort from another thread.
#include "sdxl_dreambooth/dist/collective_watchdog.h"
#include "sdxl_dreambooth/dist/device_collectives.h"
#include "sdxl_dreambooth/dist/fallback_exit.h"
#include "sdxl_dreambooth/dist/mpi_runtime.h"
#include "sdxl_dreambooth/dist/mpi_wait.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/torch_compat.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

namespace sdxl::dist {
namespace {

// An abort gets this long before the process ends regardless (fallback_exit.h).
constexpr double kAbortGraceS = 30;

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
  // Asked on the watchdog's thread, which runs in relaxed capture mode (see its set-up).
  Progress query(std::string* why) const {
    const cudaError_t rc = cudaEventQuery(event_);
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

std::string version_string(int code) {
  // NCCL >= 2.9: major*10000 + minor*100 + patch.
  return std::to_string(code / 10000) + "." + std::to_string(code / 100 % 100) + "." + std::to_string(code % 100);
}

class NcclDeviceCollectives final : public DeviceCollectives {
 public:
  NcclDeviceCollectives(HostCollectives& host, MPI_Comm comm, int device, double timeout_s, CollectiveLog* log)
      : DeviceCollectives(host), comm_(comm), device_(device), timeout_s_(timeout_s), log_(log) {
    check_cuda(cudaSetDevice(device_), "cudaSetDevice");
    refuse_shared_gpus();
    std::string id_bytes(sizeof(ncclUniqueId), '\0');
    if (rank() == 0) {
      ncclUniqueId id;
      check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
      id_bytes.assign(reinterpret_cast<const char*>(&id), sizeof id);
    }
    host_.broadcast(id_bytes, 0, "NCCL unique id");
    if (id_bytes.size() != sizeof(ncclUniqueId)) throw Error("internal: NCCL unique id of the wrong size");
    ncclUniqueId id;
    std::memcpy(&id, id_bytes.data(), sizeof id);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;  // every host wait below has a deadline
    {
      std::lock_guard<std::mutex> lock(comm_mutex_);
      const ncclResult_t rc = ncclCommInitRankConfig(&nccl_, world_size(), id, rank(), &config);
      if (rc != ncclSuccess && rc != ncclInProgress) check_nccl(rc, "ncclCommInitRankConfig");
      wait_comm_ready("ncclCommInitRankConfig");
    }
    watchdog_ = std::make_unique<CollectiveWatchdog>(
        timeout_s_, [this](const WatchedCollective& c, const std::string& why) { watchdog_abort(c, why); },
        [this] { return async_error(); },
        [this] {
          check_cuda(cudaSetDevice(device_), "cudaSetDevice (collective watchdog)");
          // While the training thread records a CUDA graph (train.cuda_graphs), CUDA's default
          // mode refuses event queries from every thread and breaks the recording; this
          // thread's calls are never part of one, so it opts out once, as PyTorch's watchdog does.
          cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
          check_cuda(cudaThreadExchangeStreamCaptureMode(&mode), "cudaThreadExchangeStreamCaptureMode");
        });
  }

  ~NcclDeviceCollectives() override {
    // A normal end has read its results back, so nothing is pending. While an exception
    // unwinds, a peer may never join what is queued: abort the communicator instead of waiting.
    const bool idle = std::uncaught_exceptions() == 0 && watchdog_ && watchdog_->wait_idle(timeout_s_);
    watchdog_.reset();  // its thread polls nccl_: stop it first
    if (!nccl_ || aborting_) return;
    if (idle) {
      ncclCommDestroy(nccl_);
    } else {
      arm_fallback_exit(kAbortGraceS, static_cast<int>(kExitFailure));
      ncclCommAbort(nccl_);
    }
  }

  std::string backend() const override { return "nccl"; }
  torch::Device device() const override { return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(device_)); }

  // Both are queued on LibTorch's current stream, behind the kernels that produce the buffer and
  // ahead of those that read it, and return at once: the host never waits for the device here.
  void all_reduce_sum(DeviceBuffer& buffer, const char* what) override {
    check(buffer, what);
    const torch::Tensor& t = buffer.tensor();
    enqueue(t, "all-reduce sum", what, [&](cudaStream_t stream) {
      return ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), nccl_type(t), ncclSum, nccl_,
                           stream);
    });
  }

  void broadcast(DeviceBuffer& buffer, int root, const char* what) override {
    check(buffer, what);
    const torch::Tensor& t = buffer.tensor();
    enqueue(t, "broadcast", what, [&](cudaStream_t stream) {
      return ncclBroadcast(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), nccl_type(t), root, nccl_,
                           stream);
    });
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
    const std::vector<std::string> all = all_gather_strings(comm_, key, timeout_s_);
    for (int r = 0; r < world_size(); ++r) {
      if (r != rank() && all[static_cast<std::size_t>(r)] == key) {
        throw UsageError("ranks " + std::to_string(std::min(r, rank())) + " and " +
                             std::to_string(std::max(r, rank())) + " would share GPU " + bus + " on " + host +
                             "; NCCL needs one GPU per rank",
                         "start as many ranks per node as GPUs (srun: --ntasks-per-node = --gpus-per-node; "
                         "mpirun: -npernode = GPUs per node)");
      }
    }
  }

  std::string last_error() const {
    const char* e = nccl_ ? ncclGetLastError(nccl_) : ncclGetLastError(nullptr);
    return e && *e ? std::string(" (") + e + ")" : std::string();
  }

  void check_nccl(ncclResult_t rc, const char* call) const {
    if (rc != ncclSuccess) {
      throw Error("[rank " + std::to_string(rank()) + "] " + call + " failed: " + ncclGetErrorString(rc) +
                  last_error());
    }
  }

  template <class Launch>
  void enqueue(const torch::Tensor& t, const char* op, const char* what, Launch launch) {
    const auto stream = static_cast<cudaStream_t>(compat::current_cuda_stream(device_));
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    check_cuda(cudaStreamIsCapturing(stream, &capture), "cudaStreamIsCapturing");
    if (capture != cudaStreamCaptureStatusNone) {
      throw Error(std::string("internal: NCCL collective '") + what +
                  "' issued while a CUDA graph is being recorded; collectives run outside the graph");
    }
    if (log_) {
      std::ostringstream d;
      d << device();
      log_->record({"nccl", op, what, &host_.context(), dtype_name(t.scalar_type()), d.str(), t.numel()});
    }
    auto started = std::make_shared<CudaEvent>();
    auto finished = std::make_shared<CudaEvent>();
    {
      std::lock_guard<std::mutex> lock(comm_mutex_);
      if (aborting_) park();
      started->record(stream);
      const ncclResult_t rc = launch(stream);
      if (rc != ncclSuccess && rc != ncclInProgress) check_nccl(rc, what);
      wait_comm_ready(what);  // a non-blocking communicator may still be queuing it (host side)
      finished->record(stream);
    }
    watchdog_->watch(WatchedCollective{what, host_.context(),
                                       [started](std::string* why) { return started->query(why); },
                                       [finished](std::string* why) { return finished->query(why); }});
  }

  // The communicator's asynchronous error, polled by the watchdog; empty when there is none, or
  // when the training thread is in a call on the communicator (the next poll looks again).
  std::string async_error() {
    std::unique_lock<std::mutex> lock(comm_mutex_, std::try_to_lock);
    if (!lock.owns_lock() || aborting_) return {};
    ncclResult_t state = ncclSuccess;
    const ncclResult_t rc = ncclCommGetAsyncError(nccl_, &state);
    if (rc != ncclSuccess) return std::string("ncclCommGetAsyncError: ") + ncclGetErrorString(rc) + last_error();
    if (state != ncclSuccess && state != ncclInProgress) return ncclGetErrorString(state) + last_error();
    return {};
  }

  // On the watchdog's thread, where MPI may not be called (MPI_THREAD_FUNNELED). Order: the
  // message; the fallback exit; no more calls from the training thread; the abort, so that
  // peers' NCCL sees the connections close; exit. The launcher ends the other ranks when this
  // one exits without MPI_Finalize (docs/distributed.md).
  [[noreturn]] void watchdog_abort(const WatchedCollective& c, const std::string& why) {
    std::fprintf(stderr, "error: [rank %d/%d] NCCL collective '%s' at %s: %s; aborting the job\n", rank(),
                 world_size(), c.what.c_str(), c.context.c_str(), why.c_str());
    std::fflush(stderr);
    arm_fallback_exit(kAbortGraceS, static_cast<int>(kExitFailure));
    aborting_ = true;
    // Not under comm_mutex_: the training thread may be stuck in a call holding it, and
    // ncclCommAbort is the one call meant to be made from another thread to free it.
    if (nccl_) ncclCommAbort(nccl_);
    std::_Exit(static_cast<int>(kExitFailure));
  }

  // On the training thread (holding comm_mutex_). MPI_Abort first: it is what ends every rank;
  // the communicator is left to the process's end.
  [[noreturn]] void abort_job(const char* what, const std::string& why) {
    std::fprintf(stderr, "error: [rank %d/%d] NCCL collective '%s' at %s: %s; aborting the job\n", rank(),
                 world_size(), what, host_.context().c_str(), why.c_str());
    std::fflush(stderr);
    arm_fallback_exit(kAbortGraceS, static_cast<int>(kExitFailure));
    aborting_ = true;
    MPI_Abort(comm_, static_cast<int>(kExitFailure));
    std::_Exit(static_cast<int>(kExitFailure));
  }

  // The training thread once the watchdog is aborting: touch nothing, wait for the exit.
  [[noreturn]] static void park() {
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  }

  // Caller holds comm_mutex_.
  void wait_comm_ready(const char* what) {
    const auto start = std::chrono::steady_clock::now();
    for (long polls = 0;; ++polls) {
      ncclResult_t state = ncclSuccess;
      check_nccl(ncclCommGetAsyncError(nccl_, &state), "ncclCommGetAsyncError");
      if (state == ncclSuccess) return;
      if (state != ncclInProgress) abort_job(what, ncclGetErrorString(state) + last_error());
      if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > timeout_s_) {
        abort_job(what, "not ready within distributed.timeout_s");
      }
      if (const long pause = poll_pause_us(polls); pause > 0) {
        std::this_thread::sleep_for(std::chrono::microseconds(pause));
      }
    }
  }

  MPI_Comm comm_;
  int device_;
  double timeout_s_;
  CollectiveLog* log_;
  ncclComm_t nccl_ = nullptr;
  std::mutex comm_mutex_;            // held by every call on nccl_ (above)
  std::atomic<bool> aborting_{false};  // set once an abort began: nothing touches nccl_ after
  std::unique_ptr<CollectiveWatchdog> watchdog_;
};

}  // namespace

bool nccl_backend_built() { return true; }

std::string collective_library_versions() {
  int nccl = 0, runtime = 0, driver = 0;
  std::string out = "NCCL ";
  out += ncclGetVersion(&nccl) == ncclSuccess ? version_string(nccl) : std::string("?");
  out += " (built with " + version_string(NCCL_VERSION_CODE) + ")";
  if (cudaRuntimeGetVersion(&runtime) == cudaSuccess) {
    out += ", CUDA runtime " + std::to_string(runtime / 1000) + "." + std::to_string(runtime % 1000 / 10);
  }
  if (cudaDriverGetVersion(&driver) == cudaSuccess) {
    out += ", driver API " + std::to_string(driver / 1000) + "." + std::to_string(driver % 1000 / 10);
  }
  return out;
}

std::unique_ptr<DeviceCollectives> make_nccl_device_collectives(HostCollectives& host, MPI_Comm comm, int device,
                                                                double timeout_s, CollectiveLog* log) {
  return std::make_unique<NcclDeviceCollectives>(host, comm, device, timeout_s, log);
}

}  // namespace sdxl::dist
