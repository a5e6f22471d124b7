// Collectives on host data: strings, file listings, scalars, flags, the small gathers of set-up
// and validation. They always go through MPI, whatever the training device, so that no host
// value ever has to become a GPU tensor for NCCL (docs/distributed.md). Tensors given to them
// must be on the CPU; a tensor on another device is an internal error, not a silent copy.
#pragma once

#include "sdxl_dreambooth/dist/collective_log.h"

#include <mpi.h>
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sdxl::dist {

class HostCollectives {
 public:
  virtual ~HostCollectives() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;

  // Where in the run the next collectives happen ("step 12"), for timeout and error messages
  // and SDXL_DISTRIBUTED_DEBUG; the device collectives report the same.
  void set_context(std::string context) { context_ = std::move(context); }
  const std::string& context() const { return context_; }

  // Over all ranks.
  virtual double all_reduce_sum(double value, const char* what) = 0;
  virtual double all_reduce_max(double value, const char* what) = 0;
  virtual double all_reduce_min(double value, const char* what) = 0;
  // Element-wise maximum in place: flags (any rank's 1 wins) and hashes, in one call.
  virtual void all_reduce_max(std::vector<std::uint8_t>& values, const char* what) = 0;
  virtual void all_reduce_max(std::vector<std::uint64_t>& values, const char* what) = 0;
  // Rank `root`'s bytes on every rank (the other ranks' `bytes` are replaced, any length).
  virtual void broadcast(std::string& bytes, int root, const char* what) = 0;
  // The rows (dim 0) of every rank's CPU tensor, concatenated in rank order; row counts may
  // differ, the other dimensions and the dtype may not.
  virtual torch::Tensor all_gather_rows(const torch::Tensor& tensor, const char* what) = 0;

  // Nobody goes on until every rank has come here.
  void barrier(const char* what) { all_reduce_max(0.0, what); }
  // Rank `root`'s values on every rank; every rank passes as many.
  void broadcast(std::vector<double>& values, int root, const char* what);
  // True on every rank when all ranks passed the same value.
  bool all_equal(std::uint64_t value, const char* what);

 protected:
  std::string context_ = "set-up";
};

// The MPI implementation on `comm` (not owned). A collective that has not completed after
// `timeout_s` prints which rank, context and collective and calls MPI_Abort (mpi_wait.h).
// Each call is recorded in `log` (not owned; may be null).
std::unique_ptr<HostCollectives> make_mpi_host_collectives(MPI_Comm comm, double timeout_s,
                                                           CollectiveLog* log = nullptr);

}  // namespace sdxl::dist
