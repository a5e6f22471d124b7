// kohya's tag shuffling, with the permutation given: split and trimmed at the separator, the
// first keep_tokens tags in place, joined with ", ".
#include "sdxl_dreambooth/data/caption_tags.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

using namespace sdxl::data;

namespace {

std::vector<std::int64_t> reversed(std::int64_t n) {
  std::vector<std::int64_t> p(static_cast<std::size_t>(n));
  std::iota(p.rbegin(), p.rend(), 0);
  return p;
}

}  // namespace

TEST(CaptionTags, SplitTrimsEachTag) {
  EXPECT_EQ(split_tags("  sks cat,sitting , chair ,", ","), (std::vector<std::string>{"sks cat", "sitting", "chair", ""}));
  EXPECT_EQ(split_tags("a||b", "||"), (std::vector<std::string>{"a", "b"}));
}

TEST(CaptionTags, KeepTokensStayInFront) {
  EXPECT_EQ(shuffle_tags("sks cat, sitting, chair, indoors", ",", 1, reversed), "sks cat, indoors, chair, sitting");
  EXPECT_EQ(shuffle_tags("sks cat, sitting, chair, indoors", ",", 0, reversed), "indoors, chair, sitting, sks cat");
  EXPECT_EQ(shuffle_tags("sks cat, sitting", ",", 5, reversed), "sks cat, sitting");  // fewer tags than kept
  EXPECT_EQ(shuffle_tags("one tag", ",", 0, reversed), "one tag");
  EXPECT_EQ(shuffle_tags("a | b | c", "|", 1, reversed), "a, c, b");
}
