// Tensor comparison helpers for parity tests.
#pragma once

#include <torch/torch.h>

namespace sdxl::test {

// max |a - b| in float64.
double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace sdxl::test

// Shapes equal and max |a - b| <= tol, printing the difference on failure.
#define EXPECT_TENSOR_NEAR(actual, expected, tol)                                                        \
  do {                                                                                                   \
    const torch::Tensor _a = (actual), _e = (expected);                                                  \
    ASSERT_EQ(_a.sizes(), _e.sizes());                                                                   \
    const double _d = ::sdxl::test::max_abs_diff(_a, _e);                                                \
    EXPECT_LE(_d, (tol)) << #actual << " differs from " << #expected << " by up to " << _d;              \
  } while (0)
