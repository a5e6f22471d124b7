// The MPI collectives and the synchronized LoRA step on 2 ranks: 2 ranks × batch 1 give the
// weights 1 process × batch 2 gives (diffusers' reference for that batch).
#include "parity/parity_support.h"
#include "sdxl_dreambooth/dist/collectives.h"
#include "sdxl_dreambooth/dist/mpi_runtime.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/model/component_loader.h"
#include "sdxl_dreambooth/train/adamw.h"
#include "sdxl_dreambooth/train/diffusion_loss.h"
#include "sdxl_dreambooth/train/gradient_sync.h"
#include "sdxl_dreambooth/train/train_step.h"
#include "sdxl_dreambooth/util/strings.h"

#include <gtest/gtest.h>

using namespace sdxl;

TEST(MpiCollectives, HostSumBroadcastGatherAndScalars) {
  dist::MpiRuntime mpi(nullptr, nullptr);
  auto comm = dist::make_collectives(mpi.world(), {"mpi", torch::kCPU, 60, {}});
  dist::HostCollectives& host = comm->host();
  const int r = host.rank();
  std::string text = r == 0 ? std::string(100000, 'x') + "end" : std::string("ignored");
  host.broadcast(text, 0, "test text");
  EXPECT_EQ(text, std::string(100000, 'x') + "end");
  std::vector<double> values{r == 0 ? 7.0 : 0.0, r == 0 ? -1.5 : 0.0};
  host.broadcast(values, 0, "test values");
  EXPECT_EQ(values, (std::vector<double>{7.0, -1.5}));
  // Rank 0 has 1 row, rank 1 has none... then 2 rows: uneven shares gather in rank order.
  const torch::Tensor mine = r == 0 ? torch::ones({1, 2}, torch::kByte) : torch::full({2, 2}, 5, torch::kByte);
  const torch::Tensor all = host.all_gather_rows(mine, "test gather");
  ASSERT_EQ(all.sizes(), (std::vector<std::int64_t>{3, 2}));
  EXPECT_EQ(all[0][0].item<int>(), 1);
  EXPECT_EQ(all[2][1].item<int>(), 5);
  const torch::Tensor empty = host.all_gather_rows(r == 0 ? torch::zeros({0, 4}) : torch::ones({1, 4}), "test");
  EXPECT_EQ(empty.size(0), 1);
  EXPECT_EQ(host.all_reduce_max(r, "test max"), 1.0);
  EXPECT_EQ(host.all_reduce_min(r, "test min"), 0.0);
  EXPECT_EQ(host.all_reduce_sum(r + 1, "test sum"), 3.0);
  std::vector<std::uint8_t> flags{static_cast<std::uint8_t>(r == 1), 0, 1};
  host.all_reduce_max(flags, "test flags");
  EXPECT_EQ(flags, (std::vector<std::uint8_t>{1, 0, 1}));
  EXPECT_TRUE(host.all_equal(42, "test equal"));
  EXPECT_FALSE(host.all_equal(static_cast<std::uint64_t>(r), "test unequal"));
  // Host collectives take host data only: a tensor elsewhere is refused on every rank.
  EXPECT_THROW(host.all_gather_rows(torch::zeros({1, 2}, torch::device(torch::kMeta)), "meta rows"), Error);
}

TEST(MpiCollectives, DeviceSumAndBroadcastOnTheTrainingDevice) {
  dist::MpiRuntime mpi(nullptr, nullptr);
  auto comm = dist::make_collectives(mpi.world(), {"mpi", torch::kCPU, 60, {}});
  dist::DeviceCollectives& device = comm->device();
  const int r = comm->rank();
  dist::DeviceBuffer sum = device.buffer(3, torch::kFloat);
  sum.tensor().fill_(float(r + 1));
  device.all_reduce_sum(sum, "test sum");
  EXPECT_TRUE(torch::equal(sum.tensor(), torch::full({3}, 3.0f)));
  dist::DeviceBuffer b = device.buffer(2, torch::kDouble);
  if (r == 0) b.tensor().fill_(7.0);
  device.broadcast(b, 0, "test broadcast");
  EXPECT_EQ(b.tensor()[1].item<double>(), 7.0);
  EXPECT_EQ(comm->backend(), "mpi");
}

TEST(MpiCollectives, EveryRankLogsEachCollectiveWithItsRouteUnderDetail) {
  dist::MpiRuntime mpi(nullptr, nullptr);
  std::vector<std::string> lines;
  dist::CollectiveOptions o{"mpi", torch::kCPU, 60, [&](const std::string& l) { lines.push_back(l); }};
  auto comm = dist::make_collectives(mpi.world(), o);
  comm->set_context("step 3");
  dist::DeviceBuffer g = comm->device().buffer(5, torch::kFloat);
  comm->device().all_reduce_sum(g, "all-reduce of LoRA gradients");
  comm->host().barrier("checkpoint write");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "collective 1 at step 3: all-reduce of LoRA gradients: all-reduce sum via mpi, float32 x 5 on cpu");
  EXPECT_EQ(lines[1], "collective 2 at step 3: checkpoint write: all-reduce max via mpi, float64 x 1 on host");
  EXPECT_EQ(comm->calls(), 2u);
}

TEST(SyncedLoraStep, TwoRanksOfBatchOneEqualOneProcessOfBatchTwo) {
  SDXL_REQUIRE_REFERENCE();
  dist::MpiRuntime mpi(nullptr, nullptr);
  auto comm = dist::make_collectives(mpi.world(), {"mpi", torch::kCPU, 120, {}});
  const int r = comm->rank();
  ASSERT_EQ(comm->world_size(), 2);
  const auto ref = test::vectors("lora_train_plain");  // batch 2 in one process
  auto unet = model::load_unet(test::tiny_sdxl() / "unet", {});
  const sampling::NoiseSchedule schedule(
      model::SchedulerConfig::load(test::tiny_sdxl() / "scheduler" / "scheduler_config.json"));
  auto gen = at::detail::createCPUGenerator(1234 + r);  // different on purpose: init comes from the file
  auto lora = nn::LoraNetwork::inject(*unet, {4, 4.0, {"to_q", "to_k", "to_v", "to_out.0"}}, gen, "UNet");
  std::map<std::string, torch::Tensor> init;
  for (const auto& name : ref.names()) {
    if (util::starts_with(name, "init.")) init[name.substr(5)] = ref.tensor(name);
  }
  lora.load(init, "init");
  train::check_weights_agree(lora.parameters(), comm->host(), 0);
  const auto params = lora.parameters();
  train::AdamWGroups opt({{params, 1.0, 1e-4}}, {0.9, 0.999, 1e-8, 1e-4});
  train::DynamicLossScaler no_scaling(false);
  // The step training runs (train_step.cpp): flat gradient, one all-reduce, clipping, AdamW.
  train::TrainStepParts parts;
  parts.unet = unet;
  parts.schedule = &schedule;
  parts.params = params;
  parts.optimizer = &opt;
  parts.scaler = &no_scaling;
  parts.comm = comm.get();
  parts.max_grad_norm = 1.0;
  train::StepTimes times;
  for (int step = 0; step < 2; ++step) {
    const std::string s = "step" + std::to_string(step) + ".input.";
    auto row = [&](const char* name) { return ref.tensor(s + name).narrow(0, r, 1); };
    train::DiffusionBatch b{row("latents"), row("noise"), row("t"), row("ehs"), row("te"), row("tid")};
    const train::StepResult result = train::run_train_step(parts, step, 1e-3, [&](std::int64_t) { return b; }, times);
    const double expected = ref.tensor("step" + std::to_string(step) + ".loss").item<double>();
    EXPECT_NEAR(result.loss.item<double>(), expected, 1e-5 * expected);
    EXPECT_FALSE(result.skipped);
    train::check_weights_agree(lora.parameters(), comm->host(), step + 1);
  }
  // Within 1e-5 of the single-process batch-2 weights (≥ 99.5 % of elements, as the README's
  // tolerance for Adam's sign flips on near-zero gradients; all within 2·lr).
  std::int64_t total = 0, close = 0;
  double worst = 0;
  for (const auto& [name, p] : lora.named_parameters()) {
    const torch::Tensor d = (p.detach() - ref.tensor("step1.after." + name)).abs();
    total += d.numel();
    close += (d <= 1e-5).sum().item<std::int64_t>();
    worst = std::max(worst, d.max().item<double>());
  }
  EXPECT_GE(double(close), 0.995 * double(total)) << close << " of " << total;
  EXPECT_LE(worst, 2e-3);
}
