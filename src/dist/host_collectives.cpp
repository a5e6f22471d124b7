#include "sdxl_dreambooth/dist/host_collectives.h"

#include "sdxl_dreambooth/dist/mpi_runtime.h"
#include "sdxl_dreambooth/dist/mpi_tensor_type.h"
#include "sdxl_dreambooth/dist/mpi_wait.h"
#include "sdxl_dreambooth/error.h"

#include <cstring>
#include <limits>
#include <sstream>

namespace sdxl::dist {

void HostCollectives::broadcast(std::vector<double>& values, int root, const char* what) {
  std::string bytes(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(double));
  broadcast(bytes, root, what);
  if (bytes.size() != values.size() * sizeof(double)) {
    throw Error(std::string("internal: broadcast ") + what + ": rank " + std::to_string(root) + " sent " +
                std::to_string(bytes.size() / sizeof(double)) + " values, this rank expects " +
                std::to_string(values.size()));
  }
  std::memcpy(values.data(), bytes.data(), bytes.size());
}

bool HostCollectives::all_equal(std::uint64_t value, const char* what) {
  // max(v) and max(~v) = ~min(v) in one call.
  std::vector<std::uint64_t> both{value, ~value};
  all_reduce_max(both, what);
  return both[0] == ~both[1];
}

namespace {

class MpiHostCollectives final : public HostCollectives {
 public:
  MpiHostCollectives(MPI_Comm comm, double timeout_s, CollectiveLog* log)
      : comm_(comm), timeout_s_(timeout_s), log_(log) {
    check_mpi(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check_mpi(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  }
  int rank() const override { return rank_; }
  int world_size() const override { return size_; }

  double all_reduce_sum(double v, const char* what) override { return reduce_scalar(v, MPI_SUM, "all-reduce sum", what); }
  double all_reduce_max(double v, const char* what) override { return reduce_scalar(v, MPI_MAX, "all-reduce max", what); }
  double all_reduce_min(double v, const char* what) override { return reduce_scalar(v, MPI_MIN, "all-reduce min", what); }

  void all_reduce_max(std::vector<std::uint8_t>& values, const char* what) override {
    reduce_in_place(values.data(), values.size(), MPI_UINT8_T, "uint8", what);
  }
  void all_reduce_max(std::vector<std::uint64_t>& values, const char* what) override {
    reduce_in_place(values.data(), values.size(), MPI_UINT64_T, "uint64", what);
  }

  void broadcast(std::string& bytes, int root, const char* what) override {
    unsigned long long size = bytes.size();
    MPI_Request req;
    check_mpi(MPI_Ibcast(&size, 1, MPI_UNSIGNED_LONG_LONG, root, comm_, &req), "MPI_Ibcast");
    wait(req, what);
    if (rank_ != root) bytes.assign(static_cast<std::size_t>(size), '\0');
    record("broadcast", what, "bytes", static_cast<std::int64_t>(size));
    // MPI counts are int: send in chunks so texts over 2 GiB also work.
    const std::size_t chunk = static_cast<std::size_t>(std::numeric_limits<int>::max());
    for (std::size_t off = 0; off < size; off += chunk) {
      const int n = static_cast<int>(std::min<std::size_t>(chunk, size - off));
      check_mpi(MPI_Ibcast(bytes.data() + off, n, MPI_CHAR, root, comm_, &req), "MPI_Ibcast");
      wait(req, what);
    }
  }

  torch::Tensor all_gather_rows(const torch::Tensor& in, const char* what) override {
    if (!in.device().is_cpu()) {
      std::ostringstream d;
      d << in.device();
      throw Error(std::string("internal: host collective '") + what + "' got a tensor on " + d.str() +
                  "; host collectives take CPU tensors");
    }
    const torch::Tensor t = in.contiguous();
    if (t.dim() == 0) throw Error(std::string("internal: all-gather ") + what + " needs a tensor with rows");
    // Elements per row from the shape, not numel / rows: an empty share still has its row shape.
    std::int64_t row = 1;
    for (std::int64_t d = 1; d < t.dim(); ++d) row *= t.size(d);
    std::vector<std::int64_t> rows(static_cast<std::size_t>(size_));
    std::int64_t mine = t.size(0);
    record("all-gather", what, "int64 row counts", 1);
    MPI_Request req;
    check_mpi(MPI_Iallgather(&mine, 1, MPI_INT64_T, rows.data(), 1, MPI_INT64_T, comm_, &req), "MPI_Iallgather");
    wait(req, what);
    std::vector<std::int64_t> shape = t.sizes().vec();
    std::int64_t total = 0;
    for (auto r : rows) total += r;
    if (total * row > std::numeric_limits<int>::max()) {
      throw Error(std::string("all-gather ") + what + ": " + std::to_string(total * row) +
                  " elements in all, over MPI's int count");
    }
    std::vector<int> counts(static_cast<std::size_t>(size_)), displs(static_cast<std::size_t>(size_));
    for (int r = 0, off = 0; r < size_; ++r) {
      counts[r] = static_cast<int>(rows[r] * row);
      displs[r] = off;
      off += counts[r];
    }
    shape[0] = total;
    torch::Tensor out = torch::empty(shape, t.options());
    record("all-gather rows", what, dtype_name(t.scalar_type()), t.numel());
    check_mpi(MPI_Iallgatherv(t.data_ptr(), static_cast<int>(t.numel()), mpi_tensor_type(t), out.data_ptr(), counts.data(),
                              displs.data(), mpi_tensor_type(t), comm_, &req),
              "MPI_Iallgatherv");
    wait(req, what);
    return out;
  }

 private:
  double reduce_scalar(double v, MPI_Op op, const char* name, const char* what) {
    record(name, what, "float64", 1);
    double out = 0;
    MPI_Request req;
    check_mpi(MPI_Iallreduce(&v, &out, 1, MPI_DOUBLE, op, comm_, &req), "MPI_Iallreduce");
    wait(req, what);
    return out;
  }

  void reduce_in_place(void* data, std::size_t n, MPI_Datatype type, const char* dtype, const char* what) {
    if (n > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
      throw Error(std::string("all-reduce ") + what + ": " + std::to_string(n) + " values, over MPI's int count");
    }
    record("all-reduce max", what, dtype, static_cast<std::int64_t>(n));
    MPI_Request req;
    check_mpi(MPI_Iallreduce(MPI_IN_PLACE, data, static_cast<int>(n), type, MPI_MAX, comm_, &req), "MPI_Iallreduce");
    wait(req, what);
  }

  void record(const char* op, const char* what, std::string dtype, std::int64_t count) {
    if (!log_) return;
    log_->record({"mpi", op, what, &context_, std::move(dtype), "host", count});
  }

  void wait(MPI_Request& req, const char* what) { wait_with_deadline(req, comm_, timeout_s_, what, context_); }

  MPI_Comm comm_;
  double timeout_s_;
  CollectiveLog* log_;
  int rank_ = 0, size_ = 1;
};

}  // namespace

std::unique_ptr<HostCollectives> make_mpi_host_collectives(MPI_Comm comm, double timeout_s, CollectiveLog* log) {
  return std::make_unique<MpiHostCollectives>(comm, timeout_s, log);
}

}  // namespace sdxl::dist
