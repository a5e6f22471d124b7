// GEGLU computes its two halves with the weight's row blocks (contiguous outputs) instead of
// chunking one product as diffusers does: the values and gradients must be diffusers'.
#include "sdxl_dreambooth/nn/transformer_2d.h"
#include "support/tensors.h"

#include <gtest/gtest.h>

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
