// The collectives' API without MPI: what a device collective accepts, the debug switch, the
// poll schedule of every wait. The MPI tests (mpi/gradient_sync_test.cpp) run the real backend
// at 2 ranks, the e2e tests the whole program at 1 and 2.
#include "sdxl_dreambooth/dist/collective_log.h"
#include "sdxl_dreambooth/dist/device_collectives.h"
#include "sdxl_dreambooth/dist/mpi_wait.h"
#include "sdxl_dreambooth/error.h"
#include "support/one_rank_collectives.h"

#include <gtest/gtest.h>

#include <type_traits>

using namespace sdxl;

// A device collective takes only a DeviceBuffer: a host tensor does not compile (the NCCL
// blocker of issue 26 was host data given to the device path).
static_assert(!std::is_invocable_v<decltype(&dist::DeviceCollectives::all_reduce_sum), dist::DeviceCollectives&,
                                   torch::Tensor&, const char*>);
static_assert(!std::is_invocable_v<decltype(&dist::DeviceCollectives::broadcast), dist::DeviceCollectives&,
                                   torch::Tensor&, int, const char*>);
static_assert(!std::is_constructible_v<dist::DeviceBuffer, torch::Tensor>);

TEST(DeviceCollectives, BuffersLiveOnTheTrainingDevice) {
  auto comm = test::make_one_rank_collectives(torch::kCPU);
  const dist::DeviceBuffer b = comm->device().buffer(7, torch::kFloat);
  EXPECT_TRUE(b.tensor().device().is_cpu());
  EXPECT_EQ(b.tensor().numel(), 7);
  EXPECT_TRUE(b.tensor().is_contiguous());
  EXPECT_EQ(b.tensor().sum().item<float>(), 0.0f);
}

TEST(DeviceCollectives, ABufferOfAnotherDeviceIsAClearError) {
  auto cpu = test::make_one_rank_collectives(torch::kCPU);
  auto meta = test::make_one_rank_collectives(torch::Device(torch::kMeta));
  dist::DeviceBuffer elsewhere = meta->device().buffer(4, torch::kFloat);
  try {
    cpu->device().all_reduce_sum(elsewhere, "all-reduce of LoRA gradients");
    FAIL() << "a buffer on another device was accepted";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("[rank 0] device collective 'all-reduce of LoRA gradients' got a tensor on meta"),
              std::string::npos)
        << what;
    EXPECT_NE(what.find("contiguous tensors on cpu"), std::string::npos) << what;
  }
  EXPECT_THROW(cpu->device().broadcast(elsewhere, 0, "checkpoint adapters"), Error);
}

TEST(DistributedDebug, OffDetailOrAUsageError) {
  EXPECT_EQ(dist::parse_distributed_debug(nullptr), dist::DistributedDebug::kOff);
  EXPECT_EQ(dist::parse_distributed_debug(""), dist::DistributedDebug::kOff);
  EXPECT_EQ(dist::parse_distributed_debug("OFF"), dist::DistributedDebug::kOff);
  EXPECT_EQ(dist::parse_distributed_debug("detail"), dist::DistributedDebug::kDetail);
  EXPECT_EQ(dist::parse_distributed_debug("DETAIL"), dist::DistributedDebug::kDetail);
  EXPECT_THROW(dist::parse_distributed_debug("info"), UsageError);
}

TEST(DistributedDebug, ALineNamesTheCallItsRouteAndItsData) {
  std::vector<std::string> lines;
  dist::CollectiveLog log([&](const std::string& l) { lines.push_back(l); });
  const std::string context = "step 12";
  log.record({"nccl", "all-reduce sum", "all-reduce of LoRA gradients", &context, "float32", "cuda:1", 2991361});
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0],
            "collective 1 at step 12: all-reduce of LoRA gradients: all-reduce sum via nccl, float32 x 2991361 on "
            "cuda:1");
  dist::CollectiveLog off;
  off.record({"mpi", "broadcast", "x", &context, "bytes", "host", 3});
  EXPECT_EQ(off.calls(), 1u) << "counted even when not printed";
  EXPECT_EQ(dist::dtype_name(torch::kBFloat16), "bfloat16");
}

TEST(MpiWait, SpinsFirstThenBacksOffFromMicrosecondsToAHundred) {
  for (long polls = 0; polls < 64; ++polls) EXPECT_EQ(dist::poll_pause_us(polls), 0) << polls;
  EXPECT_EQ(dist::poll_pause_us(64), 1);
  EXPECT_EQ(dist::poll_pause_us(65), 2);
  EXPECT_EQ(dist::poll_pause_us(70), 64);
  EXPECT_EQ(dist::poll_pause_us(71), 100);
  EXPECT_EQ(dist::poll_pause_us(1000000), 100) << "never longer than 100 µs";
}
