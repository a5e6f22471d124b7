// Loading reference vectors and comparing tensors with the README's tolerances.
#pragma once

#include "sdxl_dreambooth/io/safetensors_torch.h"
#include "sdxl_dreambooth/model/weight_source.h"
#include "support/reference.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace sdxl::test {

inline model::WeightSource vectors(const std::string& name) {
  return model::WeightSource::open_file(reference_dir() / "vectors" / (name + ".safetensors"));
}

inline std::filesystem::path tiny_sdxl() { return reference_dir() / "tiny-sdxl"; }

inline double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
}

}  // namespace sdxl::test

// Shapes equal and max |a - b| <= tol, printing the difference on failure.
#define EXPECT_TENSOR_NEAR(actual, expected, tol)                                                        \
  do {                                                                                                   \
    const torch::Tensor _a = (actual), _e = (expected);                                                  \
    ASSERT_EQ(_a.sizes(), _e.sizes());                                                                   \
    const double _d = ::sdxl::test::max_abs_diff(_a, _e);                                                \
    EXPECT_LE(_d, (tol)) << #actual << " differs from " << #expected << " by up to " << _d;              \
  } while (0)
