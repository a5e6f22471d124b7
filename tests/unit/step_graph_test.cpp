// train.cuda_graphs' bookkeeping on the CPU, through StepGraph's emulation: the recorded inputs
// are refilled for every replay, the gradients handed back, each step's loss kept, micro-batches
// summed. A real CUDA graph runs the same code around cudaGraphLaunch (cuda_parity_tests:
// CudaParity.GraphedStepsMatchEagerSteps).
#include "sdxl_dreambooth/build_features.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/train/step_graph.h"
#include "support/small_lora_training.h"

#include <gtest/gtest.h>

using namespace sdxl;

namespace {

using train::DiffusionBatch;
using train::StepGraph;

DiffusionBatch rows(double value, std::int64_t n = 2) {
  DiffusionBatch b;
  b.latents = torch::full({n, 4}, value);
  return b;
}

}  // namespace

TEST(StepGraph, ReplaysRefillTheInputsWriteTheGradientsAndKeepEachLoss) {
  torch::Tensor w = torch::ones({4}, torch::requires_grad());
  StepGraph graph(StepGraph::Mode::kEmulated);
  int passes = 0;
  const StepGraph::Pass pass = [&](const DiffusionBatch& b) {
    ++passes;
    const torch::Tensor loss = (b.latents * w).sum();
    loss.backward();
    return loss.detach();
  };
  DiffusionBatch first = rows(1.0);
  const torch::Tensor loss1 = graph.run(first, pass, {w});
  EXPECT_TRUE(graph.recorded());
  ASSERT_TRUE(w.grad().defined());
  EXPECT_TRUE(torch::equal(w.grad(), torch::full({4}, 2.0)));
  const torch::Tensor grad1 = w.grad();

  // No zero_grad in between: a replay writes the gradient, as a recorded backward that found
  // none does, instead of adding to it.
  const torch::Tensor loss2 = graph.run(rows(3.0), pass, {w});
  EXPECT_TRUE(torch::equal(first.latents, rows(1.0).latents)) << "the graph's inputs are its own tensors";
  EXPECT_TRUE(torch::equal(w.grad(), torch::full({4}, 6.0)));
  EXPECT_TRUE(w.grad().is_same(grad1));  // the recorded tensor, handed back
  EXPECT_EQ(loss1.item<double>(), 8.0);  // each call's loss is the caller's own
  EXPECT_EQ(loss2.item<double>(), 24.0);

  w.mutable_grad().reset();  // what AdamW::zero_grad does
  const torch::Tensor loss3 = graph.run(rows(0.5), pass, {w});
  EXPECT_EQ(loss3.item<double>(), 4.0);
  EXPECT_TRUE(w.grad().is_same(grad1));
  EXPECT_TRUE(torch::equal(w.grad(), torch::full({4}, 1.0)));
  EXPECT_EQ(passes, 4);  // recording, then a replay per call
}

TEST(StepGraph, RefusesABatchOfAnotherShape) {
  torch::Tensor w = torch::ones({4}, torch::requires_grad());
  StepGraph graph(StepGraph::Mode::kEmulated);
  const StepGraph::Pass pass = [&](const DiffusionBatch& b) {
    const torch::Tensor loss = (b.latents * w).sum();
    loss.backward();
    return loss.detach();
  };
  graph.run(rows(1.0), pass, {w});
  try {
    graph.run(rows(1.0, 3), pass, {w});
    FAIL() << "a batch of 3 replayed a graph recorded for 2";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("latents is [3, 4]"), std::string::npos) << what;
    EXPECT_NE(what.find("[2, 4]"), std::string::npos) << what;
    EXPECT_NE(what.find("fixed shapes"), std::string::npos) << what;
  }
  DiffusionBatch with_noise = rows(1.0);
  with_noise.noise = torch::zeros({2, 4});
  EXPECT_THROW(graph.run(with_noise, pass, {w}), Error);
}

TEST(StepGraph, CudaGraphsNeedACudaBuild) {
  if (build_features().torch_cuda_built) {
    EXPECT_NO_THROW(StepGraph(StepGraph::Mode::kCuda));
  } else {
    EXPECT_THROW(StepGraph(StepGraph::Mode::kCuda), UsageError);
  }
}

// The training step through a graph is the eager step, bit for bit on the CPU: same losses,
// gradient norms and weights after three optimizer steps, with and without gradient
// accumulation (where the graph's micro-batch gradients are summed outside it). In float32 each
// adapter has its own gradient; in bfloat16 with the adapters cast once per pass, as on CUDA,
// all gradients are views of one buffer, which every replay rewrites; with gradient
// checkpointing the pass runs a nested backward.
TEST(StepGraph, EmulatedGraphStepsAreTheEagerSteps) {
  enum class Kind { kFp32, kOneBuffer, kCheckpointing };
  for (const Kind kind : {Kind::kFp32, Kind::kOneBuffer, Kind::kCheckpointing}) {
    for (const std::int64_t accum : {1, 2}) {
      test::SmallLoraTrainingOptions o;
      o.grad_accum = accum;
      std::string what = "fp32";
      if (kind == Kind::kOneBuffer) {
        o.dtype = torch::kBFloat16;
        o.cast_adapters_once = true;
        what = "bf16, one gradient buffer";
      } else if (kind == Kind::kCheckpointing) {
        o.gradient_checkpointing = true;
        what = "fp32, checkpointing";
      }
      what += ", accumulation " + std::to_string(accum);
      test::SmallLoraTraining eager(torch::kCPU, o);
      o.graph = StepGraph::Mode::kEmulated;
      test::SmallLoraTraining graphed(torch::kCPU, o);
      std::vector<train::StepResult> a, b;
      for (int i = 0; i < 3; ++i) {
        a.push_back(eager.step());
        b.push_back(graphed.step());
      }
      const auto va = train::read_step_values(a), vb = train::read_step_values(b);
      for (std::size_t i = 0; i < va.size(); ++i) {
        EXPECT_EQ(va[i].loss, vb[i].loss) << what << ", step " << i;
        EXPECT_EQ(va[i].grad_norm, vb[i].grad_norm) << what << ", step " << i;
      }
      EXPECT_NE(va[0].loss, va[1].loss) << what;  // each step saw its own batch
      const auto wa = eager.lora().named_parameters(), wb = graphed.lora().named_parameters();
      ASSERT_EQ(wa.size(), wb.size());
      for (std::size_t i = 0; i < wa.size(); ++i) {
        EXPECT_TRUE(torch::equal(wa[i].second, wb[i].second)) << wa[i].first << ", " << what;
      }
    }
  }
}
