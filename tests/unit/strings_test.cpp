#include "sdxl_dreambooth/util/strings.h"

#include <gtest/gtest.h>

using namespace sdxl::util;

TEST(Strings, FormatNumberRoundTrips) {
  EXPECT_EQ(format_number(1e-4), "0.0001");
  EXPECT_EQ(format_number(1e-8), "1e-08");
  EXPECT_EQ(format_number(5.0), "5.0");
  EXPECT_EQ(format_number(0.13025), "0.13025");
}

TEST(Strings, Nearest) {
  EXPECT_EQ(nearest("train.batchsize", {"train.batch_size", "train.seed"}), "train.batch_size");
  EXPECT_EQ(nearest("zzzzzzzz", {"train.batch_size", "train.seed"}), "");
}

TEST(Strings, SplitTrimQuote) {
  EXPECT_EQ(split("a,b,,c", ','), (std::vector<std::string>{"a", "b", "", "c"}));
  EXPECT_EQ(trim("  x y \n"), "x y");
  EXPECT_EQ(quoted("a\nb"), "'a\\x0ab'");
  EXPECT_EQ(format_bytes(1536.0), "1.5 KiB");
}
