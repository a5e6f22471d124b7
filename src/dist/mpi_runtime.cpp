#include "sdxl_dreambooth/dist/mpi_runtime.h"

#include "sdxl_dreambooth/dist/mpi_wait.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/util/regular_file.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <vector>

namespace sdxl::dist {

void check_mpi(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw Error(std::string(call) + " failed: " + std::string(msg, static_cast<std::size_t>(len)));
}

MpiRuntime::MpiRuntime(int* argc, char*** argv) {
  int initialized = 0;
  check_mpi(MPI_Initialized(&initialized), "MPI_Initialized");
  if (!initialized) {
    int provided = 0;
    // FUNNELED: only the main thread calls MPI; LibTorch's intra-op threads never do.
    check_mpi(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    owns_init_ = true;
  }
  // Errors come back as codes and become exceptions instead of MPI aborting silently.
  check_mpi(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  check_mpi(MPI_Comm_rank(MPI_COMM_WORLD, &rank_), "MPI_Comm_rank");
  check_mpi(MPI_Comm_size(MPI_COMM_WORLD, &world_size_), "MPI_Comm_size");
  check_mpi(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node_comm_),
            "MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)");
  check_mpi(MPI_Comm_rank(node_comm_, &local_rank_), "MPI_Comm_rank(node)");
  check_mpi(MPI_Comm_size(node_comm_, &local_size_), "MPI_Comm_size(node)");
}

MpiRuntime::~MpiRuntime() {
  if (node_comm_ != MPI_COMM_NULL) MPI_Comm_free(&node_comm_);
  if (owns_init_) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
  }
}

std::vector<std::string> all_gather_strings(MPI_Comm comm, const std::string& text, double timeout_s) {
  int size = 0;
  check_mpi(MPI_Comm_size(comm, &size), "MPI_Comm_size");
  if (text.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
    throw Error("all_gather_strings: a string of " + std::to_string(text.size()) + " bytes is over MPI's int count");
  }
  const int length = static_cast<int>(text.size());
  std::vector<int> lengths(static_cast<std::size_t>(size)), offsets(static_cast<std::size_t>(size));
  MPI_Request req;
  check_mpi(MPI_Iallgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, comm, &req), "MPI_Iallgather(string lengths)");
  wait_with_deadline(req, comm, timeout_s, "all-gather of string lengths", "set-up");
  long long total = 0;
  for (int r = 0; r < size; ++r) {
    offsets[static_cast<std::size_t>(r)] = static_cast<int>(total);
    total += lengths[static_cast<std::size_t>(r)];
  }
  if (total > std::numeric_limits<int>::max()) throw Error("all_gather_strings: over 2 GiB in all");
  std::string all(static_cast<std::size_t>(total), '\0');
  check_mpi(MPI_Iallgatherv(text.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR, comm,
                            &req),
            "MPI_Iallgatherv(strings)");
  wait_with_deadline(req, comm, timeout_s, "all-gather of strings", "set-up");
  std::vector<std::string> out;
  for (int r = 0; r < size; ++r) {
    out.push_back(all.substr(static_cast<std::size_t>(offsets[static_cast<std::size_t>(r)]),
                             static_cast<std::size_t>(lengths[static_cast<std::size_t>(r)])));
  }
  return out;
}

std::vector<util::CpuMask> node_affinity_masks(MPI_Comm node, double timeout_s) {
  std::vector<util::CpuMask> masks;
  for (const std::string& bits : all_gather_strings(node, util::affinity_mask().to_string(), timeout_s)) {
    masks.emplace_back(bits);
  }
  return masks;
}

std::string broadcast_string(MPI_Comm comm, const std::string& text, int root, double timeout_s) {
  int rank = 0;
  check_mpi(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank");
  unsigned long long size = text.size();
  MPI_Request req;
  check_mpi(MPI_Ibcast(&size, 1, MPI_UNSIGNED_LONG_LONG, root, comm, &req), "MPI_Ibcast(string length)");
  wait_with_deadline(req, comm, timeout_s, "broadcast of a string length", "set-up");
  std::string out = rank == root ? text : std::string(size, '\0');
  // MPI counts are int: send in chunks so strings over 2 GiB also work.
  const std::size_t chunk = static_cast<std::size_t>(std::numeric_limits<int>::max());
  for (std::size_t off = 0; off < size; off += chunk) {
    const int n = static_cast<int>(std::min<std::size_t>(chunk, size - off));
    check_mpi(MPI_Ibcast(out.data() + off, n, MPI_CHAR, root, comm, &req), "MPI_Ibcast(string)");
    wait_with_deadline(req, comm, timeout_s, "broadcast of a string", "set-up");
  }
  return out;
}

std::string read_file_collective(MPI_Comm comm, const std::string& path, double timeout_s,
                                 std::uintmax_t max_bytes) {
  int rank = 0;
  check_mpi(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank");
  std::string content, error;
  if (rank == 0) {
    error = util::small_file_problem(path, max_bytes);
    if (error.empty()) {
      std::ifstream in(path, std::ios::binary);
      if (!in) {
        error = "cannot read '" + path + "': " + std::strerror(errno);
      } else {
        std::ostringstream buf;
        buf << in.rdbuf();
        if (in.bad()) error = "error reading '" + path + "'";
        content = buf.str();
      }
    }
  }
  error = broadcast_string(comm, error, 0, timeout_s);
  if (!error.empty()) throw UsageError(error);
  return broadcast_string(comm, content, 0, timeout_s);
}

}  // namespace sdxl::dist
