#include "sdxl_dreambooth/util/adjacent_tensors.h"

#include <gtest/gtest.h>

using namespace sdxl;

TEST(AdjacentTensors, SideBySideInOrderIsOneViewOfTheStorage) {
  const auto buffer = torch::arange(10, torch::kFloat);
  const auto a = buffer.narrow(0, 2, 4).view({2, 2}), b = buffer.narrow(0, 6, 3);
  const auto flat = util::adjacent_tensors({a, b});
  ASSERT_TRUE(flat.defined());
  EXPECT_TRUE(flat.is_alias_of(buffer));
  EXPECT_TRUE(torch::equal(flat, torch::arange(2, 9, torch::kFloat)));
}

TEST(AdjacentTensors, AnythingElseIsUndefined) {
  const auto buffer = torch::arange(10, torch::kFloat);
  const auto a = buffer.narrow(0, 0, 4), b = buffer.narrow(0, 4, 3);
  EXPECT_FALSE(util::adjacent_tensors({}).defined());
  EXPECT_FALSE(util::adjacent_tensors({b, a}).defined()) << "out of order";
  EXPECT_FALSE(util::adjacent_tensors({a, buffer.narrow(0, 5, 3)}).defined()) << "a gap";
  EXPECT_FALSE(util::adjacent_tensors({a, torch::arange(3, torch::kFloat)}).defined()) << "another storage";
  EXPECT_FALSE(util::adjacent_tensors({buffer.view({2, 5}).t()}).defined()) << "not contiguous";
  EXPECT_FALSE(util::adjacent_tensors({a, torch::Tensor()}).defined()) << "undefined";
}
