// GEGLU computes its two halves with the weight's row blocks (contiguous outputs) instead of
// chunking one product as diffusers does: the values and gradients must be diffusers'. Its
// product (nn/geglu_product) keeps less for the backward than autograd would, with the same
// values, and the arithmetic of its fused CUDA kernels is checked here against ATen's.
#include "sdxl_dreambooth/nn/geglu_math.h"
#include "sdxl_dreambooth/nn/geglu_product.h"
#include "sdxl_dreambooth/nn/transformer_2d.h"
#include "sdxl_dreambooth/torch_compat.h"
#include "support/tensors.h"

#include <c10/core/Allocator.h>
#include <c10/util/ThreadLocalDebugInfo.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

using namespace sdxl;

TEST(Geglu, EqualsDiffusersChunkedProductWithItsGradients) {
  torch::manual_seed(4);
  nn::GEGLU g(6, 5);
  const auto x = torch::randn({2, 3, 6}, torch::requires_grad());
  const auto out = g(x);
  EXPECT_TRUE(out.is_contiguous());
  const auto grad_out = torch::randn({2, 3, 5});
  const auto grads = torch::autograd::grad({out}, {x, g->proj->weight, g->proj->bias}, {grad_out});

  const auto parts = torch::nn::functional::linear(x, g->proj->weight, g->proj->bias).chunk(2, -1);
  const auto expected = parts[0] * torch::gelu(parts[1]);
  const auto expected_grads = torch::autograd::grad({expected}, {x, g->proj->weight, g->proj->bias}, {grad_out});
  EXPECT_TENSOR_NEAR(out, expected, 1e-6);
  for (std::size_t i = 0; i < grads.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_TENSOR_NEAR(grads[i], expected_grads[i], 1e-5);
  }
}

namespace {

// Every CPU allocation and free while alive, through the hook LibTorch's memory profiler uses.
struct LiveCpuBytes : c10::MemoryReportingInfoBase {
  std::int64_t live = 0;
  void reportMemoryUsage(void* /*ptr*/, int64_t alloc_size, compat::MemoryReportTotal /*total_allocated*/,
                         compat::MemoryReportTotal /*total_reserved*/, c10::Device device) override {
    if (device.is_cpu()) live += alloc_size;
  }
  bool memoryProfilingEnabled() const override { return true; }
};

// Bytes a forward leaves alive (its output and what its backward keeps), inputs excluded.
std::int64_t bytes_kept(const std::function<torch::Tensor()>& forward, torch::Tensor* out) {
  auto counter = std::make_shared<LiveCpuBytes>();
  c10::DebugInfoGuard guard(c10::DebugInfoKind::PROFILER_STATE, counter);
  *out = forward();
  return counter->live;
}

}  // namespace

TEST(GegluProduct, GradientsAreAutogradsForTheCompositionBitForBit) {
  for (const auto dtype : {torch::kFloat, torch::kBFloat16}) {
    for (const int needs : {3, 1, 2}) {  // bit 0: a requires grad, bit 1: gate does
      SCOPED_TRACE(std::string(c10::toString(dtype)) + ", needs " + std::to_string(needs));
      torch::manual_seed(7);
      const auto a = (torch::randn({3, 40, 24}) * 2).to(dtype).requires_grad_((needs & 1) != 0);
      const auto gate = (torch::randn({3, 40, 24}) * 3).to(dtype).requires_grad_((needs & 2) != 0);
      const auto grad = torch::randn({3, 40, 24}).to(dtype);
      std::vector<torch::Tensor> inputs;
      if (needs & 1) inputs.push_back(a);
      if (needs & 2) inputs.push_back(gate);
      const auto out = nn::geglu_product(a, gate);
      const auto expected = a * torch::gelu(gate);
      EXPECT_TRUE(torch::equal(out, expected));
      EXPECT_NE(out.grad_fn()->name().find("GegluProduct"), std::string::npos) << out.grad_fn()->name();
      const auto grads = torch::autograd::grad({out}, inputs, {grad});
      const auto expected_grads = torch::autograd::grad({expected}, inputs, {grad});
      for (std::size_t i = 0; i < grads.size(); ++i) {
        SCOPED_TRACE(i);
        EXPECT_TRUE(torch::equal(grads[i], expected_grads[i]));
      }
    }
  }
}

TEST(GegluProduct, KeepsOnlyItsInputsForTheBackward) {
  const auto a = torch::randn({64, 1024}, torch::requires_grad());
  const auto gate = torch::randn({64, 1024}, torch::requires_grad());
  const std::int64_t one = a.numel() * 4;
  // Autograd's composition keeps gelu(gate) for the product's backward; this one does not.
  torch::Tensor composed, out;
  EXPECT_EQ(bytes_kept([&] { return a * torch::gelu(gate); }, &composed), 2 * one);
  EXPECT_EQ(bytes_kept([&] { return nn::geglu_product(a, gate); }, &out), one);
  out.sum().backward();
  EXPECT_TRUE(torch::equal(gate.grad(), torch::gelu_backward(a.detach(), gate.detach())));
  // Without autograd it is the plain composition.
  torch::NoGradGuard no_grad;
  EXPECT_EQ(nn::geglu_product(a, gate).grad_fn(), nullptr);
}

TEST(GegluProduct, BroadcastingAndMixedTypesFallBackToAutograd) {
  const auto a = torch::randn({4, 6}, torch::requires_grad());
  const auto gate = torch::randn({6}, torch::requires_grad());
  const auto out = nn::geglu_product(a, gate);
  EXPECT_TRUE(torch::equal(out, a * torch::gelu(gate)));
  out.sum().backward();
  EXPECT_EQ(gate.grad().sizes(), gate.sizes());
  const auto half_gate = torch::randn({4, 6}).to(torch::kBFloat16);
  EXPECT_EQ(nn::geglu_product(a, half_gate).scalar_type(), torch::kFloat);
}

namespace {

template <typename T>
struct RoundTo {
  float operator()(float x) const { return static_cast<float>(T(x)); }
};
struct Exact {
  float operator()(float x) const { return x; }
};

// The fused CUDA kernels' per-element arithmetic (nn/geglu_math.h), run on the CPU.
template <typename Round>
std::vector<torch::Tensor> kernel_math(const torch::Tensor& grad, const torch::Tensor& a, const torch::Tensor& gate,
                                       Round round) {
  const auto g = grad.to(torch::kFloat).contiguous(), x = a.to(torch::kFloat).contiguous(),
             y = gate.to(torch::kFloat).contiguous();
  auto out = torch::empty_like(x), da = torch::empty_like(x), dg = torch::empty_like(x);
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    out.data_ptr<float>()[i] = nn::geglu_math::forward(x.data_ptr<float>()[i], y.data_ptr<float>()[i], round);
    nn::geglu_math::backward(g.data_ptr<float>()[i], x.data_ptr<float>()[i], y.data_ptr<float>()[i], round,
                             da.data_ptr<float>()[i], dg.data_ptr<float>()[i]);
  }
  return {out, da, dg};
}

}  // namespace

// The CUDA kernels cannot run here; their arithmetic can. Against ATen's CPU kernels (whose
// vectorized erf and exp differ from the C library's in the last bits) it must agree to a few
// float32 ulps, and in bfloat16 to one unit of the type's last place, where a last-bit
// difference in float can tip a rounding; near zero (gelu's far negative side, where 1 + erf
// cancels) to the same units of the largest value.
TEST(GegluProduct, FusedKernelArithmeticIsAtens) {
  torch::manual_seed(11);
  const auto a = torch::randn({4096}) * 2, gate = torch::linspace(-8, 8, 4096), grad = torch::randn({4096});
  auto compare = [&](torch::Dtype dtype, const std::vector<torch::Tensor>& got, double ulp) {
    const auto ta = a.to(dtype), tg = gate.to(dtype), td = grad.to(dtype);
    const std::vector<torch::Tensor> want{ta * torch::gelu(tg), td * torch::gelu(tg),
                                          torch::gelu_backward(td * ta, tg)};
    const char* names[] = {"out", "grad_a", "grad_gate"};
    for (int i = 0; i < 3; ++i) {
      SCOPED_TRACE(std::string(c10::toString(dtype)) + " " + names[i]);
      const auto w = want[i].to(torch::kFloat);
      const auto err = (got[i] - w).abs();
      const auto bound = (w.abs() + w.abs().max()) * ulp;
      const auto worst = (err / bound).argmax().item<std::int64_t>();
      EXPECT_TRUE((err <= bound).all().item<bool>())
          << "worst at gate " << gate[worst].item<float>() << ", a " << a[worst].item<float>() << ": "
          << got[i][worst].item<float>() << " against " << w[worst].item<float>();
    }
  };
  compare(torch::kFloat, kernel_math(grad, a, gate, Exact()), 4 * std::ldexp(1.0, -23));
  compare(torch::kBFloat16, kernel_math(grad.to(torch::kBFloat16), a.to(torch::kBFloat16), gate.to(torch::kBFloat16),
                                        RoundTo<c10::BFloat16>()),
          std::ldexp(1.0, -7));
  // float16: LibTorch 1.13 has no CPU gelu for it; CudaParity.FusedGegluKernels covers it.
}
