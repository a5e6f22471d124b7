// LoRA adapters: injection by target name, the forward formula, merging, loading, and the
// AdamW/clipping/loss-scaling pieces of the step.
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/nn/attention.h"
#include "sdxl_dreambooth/nn/lora_network.h"
#include "sdxl_dreambooth/train/adamw.h"
#include "sdxl_dreambooth/train/grad_norm.h"
#include "sdxl_dreambooth/train/gradient_sync.h"
#include "sdxl_dreambooth/train/loss_scaler.h"
#include "sdxl_dreambooth/train/train_step.h"
#include "support/small_lora_training.h"
#include "support/tensors.h"

#include <gtest/gtest.h>

#include <cmath>
#include <memory>

using namespace sdxl;

namespace {
nn::Attention make_attention() {
  nn::AttentionConfig c;
  c.query_dim = 8;
  c.cross_attention_dim = 6;
  c.heads = 2;
  c.dim_head = 4;
  return nn::Attention(c);
}
}  // namespace

TEST(Lora, InjectsNamedTargetsAndFreezesTheBase) {
  torch::nn::Sequential root;
  auto attn = make_attention();
  root->push_back("attn1", attn);
  auto gen = at::detail::createCPUGenerator(0);
  const auto net = nn::LoraNetwork::inject(*root, {4, 8.0, {"to_q", "to_out.0"}}, gen, "test model");
  ASSERT_EQ(net.size(), 2u);
  EXPECT_EQ(net.module_paths()[0], "attn1.to_q");
  EXPECT_EQ(net.module_paths()[1], "attn1.to_out.0");
  const auto named = net.named_parameters();
  EXPECT_EQ(named[0].first, "attn1.to_q.lora_A.weight");
  EXPECT_EQ(named[1].first, "attn1.to_q.lora_B.weight");
  EXPECT_EQ(named[0].second.sizes(), (std::vector<std::int64_t>{4, 8}));
  EXPECT_EQ(net.num_parameters(), 4 * (8 + 8) * 2);
  // The module's own names carry the adapter too (what checkpoints and exports start from).
  bool found = false;
  for (const auto& p : root->named_parameters()) {
    if (p.key() == "attn1.to_q.lora_A.weight") found = true;
    EXPECT_EQ(p.value().requires_grad(), p.key().find("lora_") != std::string::npos) << p.key();
  }
  EXPECT_TRUE(found);
  EXPECT_THROW(nn::LoraNetwork::inject(*root, {4, 4.0, {"to_x"}}, gen, "test model"), UsageError);
}

TEST(Lora, ForwardIsBasePlusScaledUpdateAndMergeMatches) {
  nn::LoraCompatibleLinear lin(5, 3, true);
  auto gen = at::detail::createCPUGenerator(1);
  lin->add_lora(2, 4.0, gen);
  torch::NoGradGuard no_grad;
  // B starts at zero: the layer is unchanged.
  const auto x = torch::randn({7, 5});
  EXPECT_TENSOR_NEAR(lin(x), torch::nn::functional::linear(x, lin->weight, lin->bias), 0.0);
  lin->lora_B->weight.normal_();
  const auto expected = torch::nn::functional::linear(x, lin->weight, lin->bias) +
                        2.0 * torch::matmul(torch::matmul(x, lin->lora_A->weight.t()), lin->lora_B->weight.t());
  EXPECT_TENSOR_NEAR(lin(x), expected, 1e-5);
  // A ~ N(0, 1/rank²): std near 1/2.
  EXPECT_NEAR(lin->lora_A->weight.std().item<double>(), 0.5, 0.35);
  lin->merge_lora();
  EXPECT_FALSE(lin->has_lora());
  EXPECT_TENSOR_NEAR(lin(x), expected, 1e-5);
}

// forward adds the adapter inside its B product (addmm_ into the base output): over batches of
// tokens, values and the gradients of input, A and B are those of base + scaling · B(A x).
TEST(Lora, TokenBatchesAndGradientsFollowTheFormula) {
  torch::manual_seed(2);
  nn::LoraCompatibleLinear lin(5, 3, true);
  auto gen = at::detail::createCPUGenerator(1);
  lin->add_lora(2, 3.0, gen);
  {
    torch::NoGradGuard no_grad;
    lin->lora_B->weight.normal_();
  }
  lin->lora_scale = 0.5;
  const auto x = torch::randn({2, 4, 5}, torch::requires_grad());
  const auto out = lin(x);
  ASSERT_EQ(out.sizes(), (std::vector<std::int64_t>{2, 4, 3}));
  const auto g = torch::randn({2, 4, 3});
  const std::vector<torch::Tensor> wrt{x, lin->lora_A->weight, lin->lora_B->weight};
  const auto grads = torch::autograd::grad({out}, wrt, {g});
  const auto expected = torch::nn::functional::linear(x, lin->weight, lin->bias) +
                        0.75 * torch::matmul(torch::matmul(x, lin->lora_A->weight.t()), lin->lora_B->weight.t());
  const auto expected_grads = torch::autograd::grad({expected}, wrt, {g});
  EXPECT_TENSOR_NEAR(out, expected, 1e-5);
  for (std::size_t i = 0; i < wrt.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_TENSOR_NEAR(grads[i], expected_grads[i], 1e-5);
  }
}

TEST(Lora, LoadChecksNamesAndShapes) {
  torch::nn::Sequential root;
  root->push_back("attn1", make_attention());
  auto gen = at::detail::createCPUGenerator(0);
  auto net = nn::LoraNetwork::inject(*root, {2, 2.0, {"to_k"}}, gen, "test model");
  std::map<std::string, torch::Tensor> t{{"attn1.to_k.lora_A.weight", torch::ones({2, 6})},
                                         {"attn1.to_k.lora_B.weight", torch::ones({8, 2})}};
  net.load(t, "file.safetensors");
  EXPECT_EQ(net.named_parameters()[0].second.sum().item<double>(), 12.0);
  t["attn1.to_k.lora_B.weight"] = torch::ones({8, 3});
  EXPECT_THROW(net.load(t, "file.safetensors"), Error);
  t["attn1.to_k.lora_B.weight"] = torch::ones({8, 2});
  t["attn1.to_v.lora_A.weight"] = torch::ones({2, 6});
  EXPECT_THROW(net.load(t, "file.safetensors"), Error);
}

TEST(TrainStep, AdamWMatchesTheClosedFormFirstStep) {
  // First step with bias correction: p -= lr·wd·p, then p -= lr · g/|g| (per element, eps aside).
  auto p = torch::tensor({1.0f, -2.0f}).requires_grad_(true);
  p.mutable_grad() = torch::tensor({0.5f, -0.1f});
  train::AdamW opt({p}, {0.9, 0.999, 1e-8, 0.01});
  opt.step(0.1);
  EXPECT_NEAR(p[0].item<double>(), 1.0 * (1 - 0.001) - 0.1, 1e-6);
  EXPECT_NEAR(p[1].item<double>(), -2.0 * (1 - 0.001) + 0.1, 1e-6);
  EXPECT_EQ(opt.steps_taken(), 1);
}

// The flat fast path (one buffer for all parameters) against the per-parameter path it
// replaces: the same values after several steps, parameters without a gradient left alone,
// and a module moved after construction (its parameters leave the buffer) still right.
TEST(TrainStep, FlatAdamWEqualsThePerParameterUpdate) {
  torch::manual_seed(0);
  std::vector<torch::Tensor> a, b;
  for (auto shape : {std::vector<std::int64_t>{4, 3}, {3}, {2, 2, 5}}) {
    const auto init = torch::randn(shape);
    a.push_back(init.clone().requires_grad_(true));
    b.push_back(init.clone().requires_grad_(true));
  }
  train::AdamW flat(a, {0.9, 0.999, 1e-8, 0.01});
  ASSERT_TRUE(flat.flat());
  EXPECT_TRUE(a[1].is_alias_of(a[0])) << "the parameters share one buffer";
  // Per-parameter reference: one optimizer per tensor (a single tensor is trivially "flat").
  std::vector<std::unique_ptr<train::AdamW>> single;
  for (auto& t : b) single.push_back(std::make_unique<train::AdamW>(std::vector<torch::Tensor>{t}, flat.options()));
  for (int step = 0; step < 3; ++step) {
    for (std::size_t i = 0; i < a.size(); ++i) {
      const bool skip = step == 1 && i == 1;  // no gradient this step
      const auto g = torch::randn(a[i].sizes());
      if (!skip) {
        a[i].mutable_grad() = g.clone();
        b[i].mutable_grad() = g.clone();
      }
    }
    flat.step(1e-2);
    for (auto& o : single) o->step(1e-2);
    flat.zero_grad();
    for (auto& o : single) o->zero_grad();
    for (std::size_t i = 0; i < a.size(); ++i) EXPECT_TENSOR_NEAR(a[i], b[i], 1e-7);
  }
  // A parameter given new storage after construction (module->to() does that) leaves the
  // buffer: the per-parameter path takes over and still updates it.
  a[0].set_data(a[0].detach().clone());
  EXPECT_FALSE(flat.flat());
  a[0].mutable_grad() = torch::ones({4, 3});
  a[1].mutable_grad() = torch::ones({3});
  a[2].mutable_grad() = torch::ones({2, 2, 5});
  const auto before = a[0].detach().clone();
  flat.step(1e-2);
  EXPECT_GT((a[0] - before).abs().max().item<double>(), 1e-4) << "the moved parameter was updated";
}

TEST(TrainStep, FlatGradientClippingMatchesPerTensor) {
  auto a = torch::zeros({2}).requires_grad_(true), b = torch::zeros({1}).requires_grad_(true),
       c = torch::zeros({3}).requires_grad_(true);
  a.mutable_grad() = torch::tensor({3.0f, 0.0f});
  b.mutable_grad() = torch::tensor({4.0f});
  std::vector<bool> has;
  auto flat = train::flatten_gradients({a, b, c}, torch::kCPU, &has);
  EXPECT_EQ(has, (std::vector<bool>{true, true, false}));
  EXPECT_TENSOR_NEAR(flat, torch::tensor({3.0f, 0.0f, 4.0f, 0.0f, 0.0f, 0.0f}), 0.0);
  EXPECT_NEAR(train::clip_flat_grad_norm(flat, 1.0).item<double>(), 5.0, 1e-6);
  EXPECT_NEAR(flat.norm().item<double>(), 1.0, 1e-5);
  EXPECT_NEAR(train::clip_flat_grad_norm(flat, 0.0).item<double>(), 1.0, 1e-5);  // 0 disables clipping
}

TEST(TrainStep, GradientsAlreadyInOneBufferAreFlattenedWithoutACopy) {
  auto a = torch::zeros({2, 2}).requires_grad_(true), b = torch::zeros({3}).requires_grad_(true);
  const auto buffer = torch::arange(7, torch::kFloat);
  a.mutable_grad() = buffer.narrow(0, 0, 4).view({2, 2});
  b.mutable_grad() = buffer.narrow(0, 4, 3);
  std::vector<bool> has;
  auto flat = train::flatten_gradients({a, b}, torch::kCPU, &has);
  EXPECT_EQ(has, (std::vector<bool>{true, true}));
  EXPECT_TRUE(flat.is_alias_of(buffer));
  EXPECT_TENSOR_NEAR(flat, buffer, 0.0);
  // Out of order (b's gradient ahead of a's): a copy, in parameter order.
  a.mutable_grad() = buffer.narrow(0, 3, 4).view({2, 2});
  b.mutable_grad() = buffer.narrow(0, 0, 3);
  flat = train::flatten_gradients({a, b}, torch::kCPU, &has);
  EXPECT_FALSE(flat.is_alias_of(buffer));
  EXPECT_TENSOR_NEAR(flat, torch::tensor({3.0f, 4.0f, 5.0f, 6.0f, 0.0f, 1.0f, 2.0f}), 0.0);
}

TEST(TrainStep, StepValuesAreReadBackTogetherInOrder) {
  std::vector<train::StepResult> steps(3);
  for (int i = 0; i < 3; ++i) {
    steps[i].loss = torch::tensor(0.5f + float(i));
    steps[i].grad_norm = torch::tensor(10.0f * float(i + 1));
  }
  const auto v = train::read_step_values(steps);
  ASSERT_EQ(v.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(v[i].loss, 0.5 + i);
    EXPECT_EQ(v[i].grad_norm, 10.0 * (i + 1));
  }
  EXPECT_TRUE(train::read_step_values({}).empty());
}

TEST(TrainStep, ANonFiniteStepEndsTheRunNamingItUnlessFp16SkippedIt) {
  train::StepResult r;
  EXPECT_NO_THROW(train::check_step_finite(7, r, {0.25, 3.0}));
  try {
    train::check_step_finite(7, r, {std::nan(""), 3.0});
    ADD_FAILURE() << "a NaN loss was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("training diverged at step 7: loss nan"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("the LoRA was not written"), std::string::npos) << e.what();
  }
  EXPECT_THROW(train::check_step_finite(8, r, {0.25, HUGE_VAL}), Error);
  r.skipped = true;  // fp16 loss scaling skipped it and backed off: training goes on
  EXPECT_NO_THROW(train::check_step_finite(9, r, {HUGE_VAL, std::nan("")}));
}

// The steps CudaParity.TrainStepNeverWaitsForTheDevice runs on a GPU, here on the CPU: the
// values stay on the step's device until read back, and the adapters learn.
TEST(TrainStep, StepsLeaveTheirValuesOnTheDeviceAndTrain) {
  test::SmallLoraTraining training(torch::kCPU);
  std::vector<torch::Tensor> before;
  for (const auto& p : training.lora().parameters()) before.push_back(p.detach().clone());
  std::vector<train::StepResult> steps;
  for (int i = 0; i < 3; ++i) steps.push_back(training.step());
  for (const auto& s : steps) {
    EXPECT_EQ(s.loss.dim(), 0);
    EXPECT_EQ(s.grad_norm.dim(), 0);
    EXPECT_FALSE(s.loss.requires_grad()) << "no autograd graph is kept alive by a pending step";
  }
  for (const auto& v : train::read_step_values(steps)) {
    EXPECT_TRUE(std::isfinite(v.loss) && v.loss > 0) << v.loss;
    EXPECT_TRUE(std::isfinite(v.grad_norm) && v.grad_norm > 1e-3) << "clipped at 1e-3: " << v.grad_norm;
  }
  double moved = 0;
  const auto after = training.lora().parameters();
  for (std::size_t i = 0; i < before.size(); ++i) {
    moved = std::max(moved, (after[i].detach() - before[i]).abs().max().item<double>());
  }
  EXPECT_GT(moved, 1e-4);
}

TEST(TrainStep, LossScalerBacksOffOnOverflowAndGrows) {
  train::DynamicLossScaler s(true, 1024.0, 2);
  auto flat = torch::tensor({2048.0f, -1024.0f});
  s.unscale_flat(flat);
  EXPECT_TENSOR_NEAR(flat, torch::tensor({2.0f, -1.0f}), 0.0);
  EXPECT_EQ(s.update(false), 512.0);
  EXPECT_EQ(s.update(true), 512.0);
  EXPECT_EQ(s.update(true), 1024.0);
  train::DynamicLossScaler off(false);
  EXPECT_EQ(off.scale(), 1.0);
}
