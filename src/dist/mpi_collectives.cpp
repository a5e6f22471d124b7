#include "sdxl_dreambooth/dist/collectives.h"
#include "sdxl_dreambooth/dist/mpi_runtime.h"
#include "sdxl_dreambooth/error.h"

#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

namespace sdxl::dist {
namespace {

MPI_Datatype mpi_type(const torch::Tensor& t) {
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

class MpiCollectives final : public Collectives {
 public:
  MpiCollectives(MPI_Comm comm, double timeout_s) : comm_(comm), timeout_s_(timeout_s) {
    check_mpi(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check_mpi(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  }
  int rank() const override { return rank_; }
  int world_size() const override { return size_; }
  std::string backend() const override { return "mpi"; }
  torch::Device device() const override { return torch::kCPU; }

  void all_reduce_sum(torch::Tensor& t, const char* what) override {
    check_cpu_contiguous(t, what);
    MPI_Request req;
    check_mpi(MPI_Iallreduce(MPI_IN_PLACE, t.data_ptr(), static_cast<int>(t.numel()), mpi_type(t), MPI_SUM, comm_,
                             &req),
              "MPI_Iallreduce");
    wait(req, what);
  }

  void broadcast(torch::Tensor& t, int root, const char* what) override {
    check_cpu_contiguous(t, what);
    MPI_Request req;
    check_mpi(MPI_Ibcast(t.data_ptr(), static_cast<int>(t.numel()), mpi_type(t), root, comm_, &req), "MPI_Ibcast");
    wait(req, what);
  }

  torch::Tensor all_gather_rows(const torch::Tensor& in, const char* what) override {
    const torch::Tensor t = in.contiguous();
    check_cpu_contiguous(t, what);
    if (t.dim() == 0) throw Error(std::string("internal: all-gather ") + what + " needs a tensor with rows");
    // Elements per row from the shape, not numel / rows: an empty share still has its row shape.
    std::int64_t row = 1;
    for (std::int64_t d = 1; d < t.dim(); ++d) row *= t.size(d);
    std::vector<std::int64_t> rows(static_cast<std::size_t>(size_));
    std::int64_t mine = t.size(0);
    MPI_Request req;
    check_mpi(MPI_Iallgather(&mine, 1, MPI_INT64_T, rows.data(), 1, MPI_INT64_T, comm_, &req), "MPI_Iallgather");
    wait(req, what);
    std::vector<std::int64_t> shape = t.sizes().vec();
    std::int64_t total = 0;
    for (auto r : rows) total += r;
    std::vector<int> counts(static_cast<std::size_t>(size_)), displs(static_cast<std::size_t>(size_));
    for (int r = 0, off = 0; r < size_; ++r) {
      counts[r] = static_cast<int>(rows[r] * row);
      displs[r] = off;
      off += counts[r];
    }
    shape[0] = total;
    torch::Tensor out = torch::empty(shape, t.options());
    check_mpi(MPI_Iallgatherv(t.data_ptr(), static_cast<int>(t.numel()), mpi_type(t), out.data_ptr(), counts.data(),
                              displs.data(), mpi_type(t), comm_, &req),
              "MPI_Iallgatherv");
    wait(req, what);
    return out;
  }

  double all_reduce_max(double v, const char* what) override { return reduce_scalar(v, MPI_MAX, what); }
  double all_reduce_min(double v, const char* what) override { return reduce_scalar(v, MPI_MIN, what); }

 private:
  double reduce_scalar(double v, MPI_Op op, const char* what) {
    double out = 0;
    MPI_Request req;
    check_mpi(MPI_Iallreduce(&v, &out, 1, MPI_DOUBLE, op, comm_, &req), "MPI_Iallreduce");
    wait(req, what);
    return out;
  }

  void check_cpu_contiguous(const torch::Tensor& t, const char* what) const {
    if (!t.device().is_cpu() || !t.is_contiguous()) {
      throw Error(std::string("internal: MPI collective ") + what + " needs a contiguous CPU tensor");
    }
  }

  // Polls with a deadline: a stuck peer must not hang the job.
  void wait(MPI_Request& req, const char* what) {
    const auto start = std::chrono::steady_clock::now();
    auto pause = std::chrono::microseconds(20);
    for (;;) {
      int done = 0;
      check_mpi(MPI_Test(&req, &done, MPI_STATUS_IGNORE), "MPI_Test");
      if (done) return;
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (waited > timeout_s_) {
        std::fprintf(stderr,
                     "error: [rank %d/%d] collective '%s' at %s did not complete within distributed.timeout_s = %g s "
                     "(a peer rank is stuck or gone); aborting the job\n",
                     rank_, size_, what, context_.c_str(), timeout_s_);
        std::fflush(stderr);
        MPI_Abort(comm_, 1);
      }
      std::this_thread::sleep_for(pause);
      if (pause < std::chrono::milliseconds(2)) pause *= 2;
    }
  }

  MPI_Comm comm_;
  double timeout_s_;
  int rank_ = 0, size_ = 1;
};

}  // namespace

std::unique_ptr<Collectives> make_mpi_collectives(MPI_Comm comm, double timeout_s) {
  return std::make_unique<MpiCollectives>(comm, timeout_s);
}

#ifndef SDXL_WITH_NCCL
bool nccl_backend_built() { return false; }

std::unique_ptr<Collectives> make_nccl_collectives(MPI_Comm, int, double) {
  throw UsageError("distributed.backend = \"nccl\": this binary was built without NCCL",
                   "rebuild with -DSDXL_WITH_NCCL=ON (needs nccl.h and libnccl), or use backend \"mpi\"");
}
#endif

}  // namespace sdxl::dist
