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

// Aspect-ratio buckets: every global batch (all ranks' shares) from one group, every example
// in each epoch, a small group filled up by repeating its own examples, and the order a
// function of (seed, epoch).
TEST(DataOrder, EveryGlobalBatchComesFromOneBucket) {
  const std::vector<std::int64_t> groups{5, 1, 8};  // examples 0-4, 5, 6-13
  const DataOrder order(groups, 2, 2, 9);
  EXPECT_EQ(order.batches_per_epoch(), 2 + 1 + 2);
  const auto group_of = [](std::int64_t i) { return i < 5 ? 0 : i < 6 ? 1 : 2; };
  for (std::int64_t epoch = 0; epoch < 3; ++epoch) {
    std::set<std::int64_t> seen;
    std::vector<int> batch_groups;
    for (std::int64_t g = epoch * 5; g < (epoch + 1) * 5; ++g) {
      std::set<int> in;
      for (int r = 0; r < 2; ++r) {
        const auto b = order.batch(g, r);
        ASSERT_EQ(b.size(), 2u);
        for (auto i : b) {
          in.insert(group_of(i));
          seen.insert(i);
        }
      }
      EXPECT_EQ(in.size(), 1u) << "global batch " << g << " mixes buckets";
      batch_groups.push_back(*in.begin());
    }
    EXPECT_EQ(seen.size(), 14u);
    std::sort(batch_groups.begin(), batch_groups.end());
    EXPECT_EQ(batch_groups, (std::vector<int>{0, 0, 1, 2, 2}));
  }
  // The one-image bucket fills its global batch of 4 with itself.
  for (std::int64_t g = 0; g < 5; ++g) {
    const auto a = order.batch(g, 0), b = order.batch(g, 1);
    if (a[0] == 5) EXPECT_EQ((std::vector<std::int64_t>{a[0], a[1], b[0], b[1]}), (std::vector<std::int64_t>{5, 5, 5, 5}));
  }
  const DataOrder again(groups, 2, 2, 9), other(groups, 2, 2, 10);
  bool differs = false;
  for (std::int64_t g = 0; g < 10; ++g) {
    EXPECT_EQ(order.batch(g, 1), again.batch(g, 1));
    differs = differs || order.batch(g, 0) != other.batch(g, 0);
  }
  EXPECT_TRUE(differs);
}

// One group is the order runs had before buckets existed (resumed checkpoints rely on it).
TEST(DataOrder, OneGroupKeepsThePlainShuffle) {
  const DataOrder plain(10, 3, 1, 7), grouped(std::vector<std::int64_t>{10}, 3, 1, 7);
  for (std::int64_t g = 0; g < 8; ++g) EXPECT_EQ(plain.batch(g, 0), grouped.batch(g, 0));
}
