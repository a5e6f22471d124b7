// The per-epoch shuffle: a permutation, reproducible from the seed, split across ranks
// without overlap, padded from the same epoch at its end.
#include "sdxl_dreambooth/train/data_order.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

using sdxl::train::DataOrder;

TEST(DataOrder, EachEpochIsAPermutationAndEpochsDiffer) {
  const DataOrder order(10, 3, 1, 42);
  auto e0 = order.permutation(0), e1 = order.permutation(1);
  auto sorted = e0;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < 10; ++i) EXPECT_EQ(sorted[i], i);
  EXPECT_NE(e0, e1);
  EXPECT_EQ(order.permutation(0), DataOrder(10, 3, 1, 42).permutation(0));
  EXPECT_NE(order.permutation(0), DataOrder(10, 3, 1, 43).permutation(0));
}

TEST(DataOrder, BatchesCoverTheEpochAndPadFromItsStart) {
  const DataOrder order(10, 3, 1, 7);
  EXPECT_EQ(order.batches_per_epoch(), 4);
  const auto p = order.permutation(0);
  std::vector<std::int64_t> seen;
  for (int g = 0; g < 4; ++g) {
    const auto b = order.batch(g, 0);
    ASSERT_EQ(b.size(), 3u);
    seen.insert(seen.end(), b.begin(), b.end());
  }
  for (int i = 0; i < 10; ++i) EXPECT_EQ(seen[i], p[i]);
  EXPECT_EQ(seen[10], p[0]);  // the last batch is filled from the epoch's start
  EXPECT_EQ(order.batch(4, 0)[0], order.permutation(1)[0]);
}

TEST(DataOrder, RanksShareAGlobalBatchWithoutOverlap) {
  const DataOrder order(16, 2, 4, 3);
  EXPECT_EQ(order.batches_per_epoch(), 2);
  std::set<std::int64_t> all;
  for (int g = 0; g < 2; ++g) {
    for (int r = 0; r < 4; ++r) {
      for (auto i : order.batch(g, r)) all.insert(i);
    }
  }
  EXPECT_EQ(all.size(), 16u);
}
