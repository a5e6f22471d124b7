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

// Whatever a file holds, a message never sends raw binary to the terminal, nor pages of it.
TEST(Strings, QuotedEscapesWhatIsNotTextAndCutsLongValues) {
  EXPECT_EQ(sdxl::util::quoted("caf\xc3\xa9 \xe2\x9c\x93"), "'caf\xc3\xa9 \xe2\x9c\x93'");  // UTF-8 stays
  EXPECT_EQ(sdxl::util::quoted(std::string("a\xff\xc3(b\x1b[31m", 10)), "'a\\xff\\xc3(b\\x1b[31m'");
  EXPECT_EQ(sdxl::util::quoted("\xed\xa0\x80"), "'\\xed\\xa0\\x80'");  // a surrogate is not UTF-8
  const std::string q = sdxl::util::quoted(std::string(1000, 'x'));
  EXPECT_EQ(q, "'" + std::string(200, 'x') + "'... (1000 bytes)");
  EXPECT_TRUE(is_valid_utf8("plain \xc3\xa9"));
  EXPECT_FALSE(is_valid_utf8("\xc0\xaf"));  // overlong '/'
  EXPECT_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // past U+10FFFF
}
