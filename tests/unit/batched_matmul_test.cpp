// Attention's batched products straight through the BLAS: the same values and gradients as
// torch::matmul for every operand layout attention produces, and torch::matmul where the
// direct path does not apply.
#include "sdxl_dreambooth/nn/batched_matmul.h"
#include "sdxl_dreambooth/util/shared_object.h"

#include <gtest/gtest.h>

#include <algorithm>

#include <torch/torch.h>

using sdxl::nn::batched_matmul;
using sdxl::nn::batched_matmul_is_direct;

namespace {

// Within float32 rounding of `ref`: the two BLAS kernels sum the same products in another
// order, so the difference scales with the values (gradients of the 77-token products reach
// ~10, where 1e-5 is a few ulps), not an absolute 1e-5.
void expect_close(const torch::Tensor& got, const torch::Tensor& ref, const char* what) {
  const float scale = std::max(1.0f, ref.abs().max().item<float>());
  EXPECT_LE((got - ref).abs().max().item<float>(), 2e-6f * scale) << what << " (largest value " << scale << ")";
}

// Product and both gradients of batched_matmul against torch::matmul on the same inputs.
void expect_like_matmul(const torch::Tensor& a0, const torch::Tensor& b0) {
  const torch::Tensor a = a0.detach().requires_grad_(true), b = b0.detach().requires_grad_(true);
  const torch::Tensor ra = a0.detach().requires_grad_(true), rb = b0.detach().requires_grad_(true);
  const torch::Tensor out = batched_matmul(a, b), ref = torch::matmul(ra, rb);
  ASSERT_EQ(out.sizes(), ref.sizes());
  expect_close(out, ref, "product");
  const torch::Tensor g = torch::randn_like(ref);
  (out * g).sum().backward();
  (ref * g).sum().backward();
  expect_close(a.grad(), ra.grad(), "gradient of a");
  expect_close(b.grad(), rb.grad(), "gradient of b");
}

}  // namespace

TEST(BatchedMatmul, AttentionsPerHeadViewsGoStraightToTheBlas) {
  // Direct exactly where LibTorch's BLAS exports sgemm_ (Debian's libtorch; PyTorch's own
  // builds link MKL statically and keep torch::matmul, where the comparisons below still hold).
  const bool blas = sdxl::util::blas_gemm_symbol() != nullptr;
  EXPECT_EQ(batched_matmul_is_direct(torch::ones({1, 2, 2}), torch::ones({1, 2, 2})), blas);
  torch::manual_seed(0);
  // q, k, v as attention makes them: [B, L, h·d] viewed as [B, h, L, d], not contiguous.
  const auto heads = [](std::int64_t b, std::int64_t l, std::int64_t h, std::int64_t d) {
    return torch::randn({b, l, h * d}).view({b, l, h, d}).transpose(1, 2);
  };
  const torch::Tensor q = heads(4, 16, 4, 16), k = heads(4, 77, 4, 16), v = heads(4, 77, 4, 16);
  EXPECT_EQ(batched_matmul_is_direct(q, k.transpose(-1, -2)), blas);
  expect_like_matmul(q, k.transpose(-1, -2));  // scores: kᵀ is column-major per matrix
  const torch::Tensor probs = torch::softmax(torch::randn({4, 4, 16, 77}), -1);
  EXPECT_EQ(batched_matmul_is_direct(probs, v), blas);
  expect_like_matmul(probs, v);
  // 3-D, contiguous, transposed on either side, one row, one column, one-token context.
  expect_like_matmul(torch::randn({8, 5, 7}), torch::randn({8, 7, 3}));
  expect_like_matmul(torch::randn({8, 7, 5}).transpose(1, 2), torch::randn({8, 3, 7}).transpose(1, 2));
  expect_like_matmul(torch::randn({3, 1, 7}), torch::randn({3, 7, 9}));
  expect_like_matmul(torch::randn({3, 6, 7}), torch::randn({3, 7, 1}));
  expect_like_matmul(heads(2, 5, 3, 8), heads(2, 1, 3, 8).transpose(-1, -2));
  // Many items: split across threads.
  expect_like_matmul(torch::randn({256, 9, 4}), torch::randn({256, 4, 6}));
}

TEST(BatchedMatmul, OtherOperandsFallBackToMatmul) {
  torch::manual_seed(1);
  const torch::Tensor a = torch::randn({2, 3, 4}), b = torch::randn({2, 4, 5});
  EXPECT_FALSE(batched_matmul_is_direct(a.to(torch::kBFloat16), b.to(torch::kBFloat16)));
  EXPECT_FALSE(batched_matmul_is_direct(a.to(torch::kDouble), b.to(torch::kDouble)));
  EXPECT_FALSE(batched_matmul_is_direct(a, torch::randn({1, 4, 5})));  // broadcast batch
  EXPECT_FALSE(batched_matmul_is_direct(a[0], b[0]));                    // 2-D
  // Neither rows nor columns contiguous: every second element of both dimensions.
  const torch::Tensor strided = torch::randn({2, 6, 8}).slice(1, 0, 6, 2).slice(2, 0, 8, 2);
  EXPECT_FALSE(batched_matmul_is_direct(strided, torch::randn({2, 4, 5})));
  expect_like_matmul(strided, torch::randn({2, 4, 5}));
  expect_like_matmul(a.to(torch::kDouble), b.to(torch::kDouble));
  const torch::Tensor h = batched_matmul(a.to(torch::kBFloat16), b.to(torch::kBFloat16));
  EXPECT_EQ(h.scalar_type(), torch::kBFloat16);
}

TEST(BatchedMatmul, WithoutGradientsItRecordsNoGraph) {
  const torch::Tensor a = torch::randn({2, 3, 4}, torch::requires_grad()), b = torch::randn({2, 4, 5});
  torch::NoGradGuard no_grad;
  EXPECT_FALSE(batched_matmul(a, b).requires_grad());
}
