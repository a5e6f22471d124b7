// The operators a UNet training step runs, as LibTorch's profiler records them: guards for the
// kernel-level savings measured on the H200 (docs/benchmarks.md, "H200 again").
#include "sdxl_dreambooth/nn/lora_network.h"
#include "sdxl_dreambooth/torch_compat.h"
#include "support/small_unet.h"

#include <torch/csrc/autograd/profiler_kineto.h>

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

using namespace sdxl;

namespace {

namespace kineto = torch::autograd::profiler;
namespace impl = torch::profiler::impl;

// "aten::add_ [2,64,32] [32]": an add whose second operand is a bias broadcast over rows.
std::vector<std::string> broadcast_bias_adds(const std::function<void()>& fn) {
  const impl::ProfilerConfig config(impl::ProfilerState::KINETO, /*report_input_shapes=*/true);
  const std::set<impl::ActivityType> activities{impl::ActivityType::CPU};
  kineto::prepareProfiler(config, activities);
  kineto::enableProfiler(config, activities);
  fn();
  const auto result = kineto::disableProfiler();
  std::vector<std::string> found;
  for (const auto& e : result->events()) {
    const std::string name = e.name();
    if ((name != "aten::add_" && name != "aten::add") || !e.hasShapes()) continue;
    const auto shapes = e.shapes();
    if (shapes.size() < 2 || shapes[0].size() < 2 || shapes[1].size() != 1) continue;
    std::string s = name;
    for (std::size_t i = 0; i < 2; ++i) {
      s += " [";
      for (auto d : shapes[i]) s += std::to_string(d) + ",";
      s += "]";
    }
    found.push_back(s);
  }
  return found;
}

}  // namespace

// Every linear layer of the step puts its bias into its GEMM (nn/linear_rows, LoRA's addmm_):
// LibTorch computes a 3-D linear with a bias as a product plus a broadcast add_, which ran in a
// strided kernel on the H200 (7.8 % of a batch-8 step).
TEST(StepOps, NoLinearAddsItsBiasInASeparateOperator) {
  // The control: plain F::linear on tokens. LibTorch 1.13 adds the bias separately; 2.x fuses
  // a contiguous input on the CPU, so there the control proves nothing and only ours is checked.
  const auto control = broadcast_bias_adds([] {
    torch::nn::Linear lin(8, 4);
    (void)lin(torch::randn({2, 3, 8}));
  });
  if (!SDXL_TORCH_VERSION_AT_LEAST(2, 0)) {
    EXPECT_FALSE(control.empty()) << "the detection would see nothing";
  }
  for (const bool fused : {false, true}) {
    SCOPED_TRACE(fused ? "fused projections" : "separate projections");
    auto unet = test::small_unet();
    auto gen = at::detail::createCPUGenerator(2);
    const auto lora = nn::LoraNetwork::inject(*unet, {4, 4.0, {"to_q", "to_k", "to_v", "to_out.0"}}, gen, "UNet");
    if (fused) unet->fuse_projections();
    const auto adds = broadcast_bias_adds([&] { test::small_unet_forward(unet).pow(2).mean().backward(); });
    EXPECT_TRUE(adds.empty()) << adds.size() << " separate bias adds, the first: " << adds.front();
    EXPECT_TRUE(lora.parameters().front().grad().defined());
  }
}
