// MPI process set-up owned by one RAII object: MPI_Init_thread in the constructor,
// MPI_Finalize in the destructor, world and node-local ranks from MPI itself.
#pragma once

#include "sdxl_dreambooth/util/cpu_threads.h"

#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace sdxl::dist {

// Throws sdxl::Error naming the call and MPI's own message when rc != MPI_SUCCESS.
void check_mpi(int rc, const char* call);

class MpiRuntime {
 public:
  // Initialises MPI unless it already is (then this object does not finalize it).
  MpiRuntime(int* argc, char*** argv);
  ~MpiRuntime();
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  // Rank among the processes of this node, from MPI_Comm_split_type(MPI_COMM_TYPE_SHARED):
  // environment variables are wrong under one launcher or another.
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  MPI_Comm world() const { return MPI_COMM_WORLD; }
  MPI_Comm node() const { return node_comm_; }

 private:
  bool owns_init_ = false;
  int rank_ = 0, world_size_ = 1, local_rank_ = 0, local_size_ = 1;
  MPI_Comm node_comm_ = MPI_COMM_NULL;
};

// The set-up collectives below run before the collectives of dist/collectives.h exist (some
// before the config is read); each wait has the deadline `timeout_s` all the same
// (dist/mpi_wait.h: past it, the job is aborted naming the call).

// Every rank's string, in rank order, on every rank.
std::vector<std::string> all_gather_strings(MPI_Comm comm, const std::string& text, double timeout_s);

// The affinity masks of the ranks of this node (`node`: MpiRuntime::node()), in node-rank
// order, for util::cpu_threads.
std::vector<util::CpuMask> node_affinity_masks(MPI_Comm node, double timeout_s);

// Rank `root`'s string on every rank.
std::string broadcast_string(MPI_Comm comm, const std::string& text, int root, double timeout_s);

// Rank 0 reads a small file (a config) once and broadcasts its bytes, so N ranks do not
// hit the parallel filesystem N times. A read error on rank 0 is thrown on every rank,
// as a UsageError, so all ranks fail together with the same message; so is a path that is no
// regular file (a FIFO would block, /dev/zero never end) or holds more than `max_bytes`.
std::string read_file_collective(MPI_Comm comm, const std::string& path, double timeout_s,
                                 std::uintmax_t max_bytes = 16u << 20);

}  // namespace sdxl::dist
