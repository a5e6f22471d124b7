// The NCCL backend on a GPU (ctest label cuda, with the parity checks): its collectives are
// queued behind LibTorch's kernels and return at once, and the deadline runs from when the
// device reaches them. One rank on one GPU: run under `mpirun -np 1` or as an MPI singleton.
// Built only with the NCCL backend (SDXL_WITH_NCCL).
#include "sdxl_dreambooth/dist/collectives.h"
#include "sdxl_dreambooth/dist/mpi_runtime.h"
#include "sdxl_dreambooth/torch_compat.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <iostream>

using namespace sdxl;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

TEST(CudaCollectives, NcclAllReduceReturnsWithoutWaitingForTheDevice) {
  ASSERT_TRUE(compat::cuda_available()) << "no CUDA device is visible to LibTorch " << compat::torch_version();
  dist::MpiRuntime mpi(nullptr, nullptr);
  // A deadline much shorter than the work queued ahead of the all-reduce: counted from the call
  // instead of from when the device reaches the collective, it would end this process. (Not
  // shorter still: creating the communicator waits under the same deadline.)
  const double timeout_s = 5.0;
  const torch::Device cuda(torch::kCUDA, 0);
  auto comm = dist::make_collectives(MPI_COMM_SELF, {"nccl", cuda, timeout_s, {}});
  comm->set_context("test");
  const torch::Tensor a = torch::randn({4096, 4096}, torch::TensorOptions().device(cuda)) / 64.0;
  dist::DeviceBuffer buffer = comm->device().buffer(1000, torch::kFloat);
  const torch::Tensor& t = buffer.tensor();
  t.copy_(torch::arange(1000, torch::TensorOptions().dtype(torch::kFloat).device(cuda)));
  const torch::Tensor want = t.cpu() + 1;

  // How long one product takes, to queue about 12 s of them.
  auto x = torch::mm(a, a);
  torch::cuda::synchronize();
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 10; ++i) x = torch::mm(x, a);
  torch::cuda::synchronize();
  const double per_product = seconds_since(start) / 10.0;
  const int products = static_cast<int>(std::ceil(12.0 / per_product));

  start = std::chrono::steady_clock::now();
  for (int i = 0; i < products; ++i) x = torch::mm(x, a);
  const double queued_at = seconds_since(start);
  const auto before_call = std::chrono::steady_clock::now();
  comm->device().all_reduce_sum(buffer, "all-reduce under test");
  const double call_s = seconds_since(before_call);
  t.add_(1);  // queued after the collective on the same stream
  const torch::Tensor got = t.cpu();
  const double total_s = seconds_since(start);
  std::cout << "[ measured ] " << products << " products of " << per_product * 1e3 << " ms queued in " << queued_at
            << " s; all_reduce_sum returned after " << call_s << " s; all done after " << total_s << " s" << std::endl;

  EXPECT_GT(total_s, timeout_s + 1.0) << "the device did not have the queued work the test relies on";
  EXPECT_LT(call_s, 0.1) << "all_reduce_sum waited for the device";
  EXPECT_TRUE(torch::equal(got, want)) << "one rank's sum is its own tensor";
}
