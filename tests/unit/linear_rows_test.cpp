// linear_rows is F::linear computed over [rows, features]: same values and gradients for
// inputs of any rank, with and without a bias.
#include "sdxl_dreambooth/nn/linear_rows.h"
#include "support/tensors.h"

#include <gtest/gtest.h>

using namespace sdxl;

TEST(LinearRows, EqualsLinearForAnyRankWithItsGradients) {
  torch::manual_seed(6);
  const auto w = torch::randn({3, 5}, torch::requires_grad());
  const auto b = torch::randn({3}, torch::requires_grad());
  for (const std::vector<std::int64_t>& shape : {std::vector<std::int64_t>{4, 5}, {2, 4, 5}, {2, 2, 3, 5}}) {
    for (const bool bias : {true, false}) {
      SCOPED_TRACE(std::to_string(shape.size()) + "-D input, bias " + (bias ? "on" : "off"));
      const auto x = torch::randn(shape, torch::requires_grad());
      const torch::Tensor bb = bias ? b : torch::Tensor();
      const auto out = nn::linear_rows(x, w, bb);
      const auto expected = torch::nn::functional::linear(x, w, bb);
      ASSERT_EQ(out.sizes(), expected.sizes());
      EXPECT_TENSOR_NEAR(out, expected, 1e-6);
      const auto g = torch::randn(expected.sizes());
      const auto grads = torch::autograd::grad({out}, {x, w}, {g});
      const auto expected_grads = torch::autograd::grad({expected}, {x, w}, {g});
      EXPECT_TENSOR_NEAR(grads[0], expected_grads[0], 1e-5);
      EXPECT_TENSOR_NEAR(grads[1], expected_grads[1], 1e-5);
    }
  }
}
