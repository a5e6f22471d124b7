// The collectives training needs, behind one interface: an MPI backend (CPU tensors; CPU
// builds, or distributed.backend = "mpi") and, on CUDA builds, NCCL. Every call has a
// deadline (distributed.timeout_s): a peer that is alive but stuck ends the job with a message
// naming this rank, the step and the collective, instead of a hang.
#pragma once

#include <mpi.h>
#include <torch/torch.h>

#include <memory>
#include <string>

namespace sdxl::dist {

class Collectives {
 public:
  virtual ~Collectives() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual std::string backend() const = 0;
  // Where tensors given to the collectives must live (CPU for MPI, the rank's GPU for NCCL).
  virtual torch::Device device() const = 0;

  // Where in the run the next collectives happen ("step 12"), for timeout and error messages.
  void set_context(std::string context) { context_ = std::move(context); }
  const std::string& context() const { return context_; }

  // In place over all ranks: sum of a contiguous float32/float64 tensor.
  virtual void all_reduce_sum(torch::Tensor& tensor, const char* what) = 0;
  // In place: rank `root`'s contents on every rank (same shape and dtype everywhere).
  virtual void broadcast(torch::Tensor& tensor, int root, const char* what) = 0;
  // The rows (dim 0) of every rank's tensor, concatenated in rank order; row counts may
  // differ, the other dimensions and the dtype may not.
  virtual torch::Tensor all_gather_rows(const torch::Tensor& tensor, const char* what) = 0;
  virtual double all_reduce_max(double value, const char* what) = 0;
  virtual double all_reduce_min(double value, const char* what) = 0;

 protected:
  std::string context_ = "set-up";
};

// MPI backend on `comm` (not owned). A collective that has not completed after `timeout_s`
// prints which rank, context and collective and calls MPI_Abort.
std::unique_ptr<Collectives> make_mpi_collectives(MPI_Comm comm, double timeout_s);

// True when this binary was built with the NCCL backend (SDXL_WITH_NCCL).
bool nccl_backend_built();

// NCCL backend on GPU `device` for the ranks of `comm` (not owned): rank 0 creates the NCCL id
// and broadcasts it over MPI; the communicator is created non-blocking so that every wait has
// the `timeout_s` deadline. all_reduce_sum/broadcast take contiguous CUDA tensors, are queued on
// LibTorch's current stream and return without waiting for the device; a watchdog thread
// (CollectiveWatchdog) keeps their deadline from when the device reaches them (on error or
// timeout: a message naming rank, context and collective, ncclCommAbort, exit). The scalar and
// gather collectives (set-up only) go through MPI on the host. Throws when NCCL was not built in.
std::unique_ptr<Collectives> make_nccl_collectives(MPI_Comm comm, int device, double timeout_s);

}  // namespace sdxl::dist
