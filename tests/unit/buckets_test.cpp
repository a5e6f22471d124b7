// Aspect-ratio buckets: kohya's sizes, nearest-ratio choice and cover resize (expected values
// from sd-scripts' make_bucket_resolutions / select_bucket run by hand), the crop into a
// bucket and the time ids it yields.
#include "sdxl_dreambooth/data/buckets.h"
#include "sdxl_dreambooth/data/preprocess.h"

#include <gtest/gtest.h>

#include <vector>

using namespace sdxl::data;

namespace {

std::vector<std::pair<int, int>> pairs(const std::vector<BucketSize>& b) {
  std::vector<std::pair<int, int>> out;
  for (const auto& s : b) out.emplace_back(s.width, s.height);
  return out;
}

}  // namespace

TEST(Buckets, KohyasSizesForSdxl) {
  const auto b = bucket_sizes(1024, 256, 2048, 64);
  ASSERT_EQ(b.size(), 41u);
  const auto p = pairs(b);
  EXPECT_EQ(p.front(), std::make_pair(256, 2048));
  EXPECT_EQ(p[4], std::make_pair(512, 1856));
  EXPECT_EQ(p[17], std::make_pair(832, 1216));
  EXPECT_EQ(p[20], std::make_pair(1024, 1024));
  EXPECT_EQ(p[25], std::make_pair(1344, 768));
  EXPECT_EQ(p.back(), std::make_pair(2048, 512));
}

TEST(Buckets, KohyasSizesForATinyModel) {
  const std::vector<std::pair<int, int>> want{{16, 128}, {32, 96}, {32, 112}, {32, 128}, {48, 80}, {64, 64},
                                              {80, 48},  {96, 32}, {112, 32}, {128, 16}, {128, 32}};
  EXPECT_EQ(pairs(bucket_sizes(64, 16, 128, 16)), want);
}

TEST(Buckets, NearestAspectRatioAndCoverSize) {
  const auto big = bucket_sizes(1024, 256, 2048, 64);
  EXPECT_EQ(big[nearest_bucket(big, 1600, 1200)], (BucketSize{1152, 896}));
  EXPECT_EQ(cover_size(1600, 1200, {1152, 896}), (std::array<int, 2>{896, 1195}));
  EXPECT_EQ(big[nearest_bucket(big, 3000, 1000)], (BucketSize{1728, 576}));
  EXPECT_EQ(cover_size(3000, 1000, {1728, 576}), (std::array<int, 2>{576, 1728}));
  EXPECT_EQ(big[nearest_bucket(big, 1000, 1000)], (BucketSize{1024, 1024}));
  const auto tiny = bucket_sizes(64, 16, 128, 16);
  EXPECT_EQ(tiny[nearest_bucket(tiny, 96, 64)], (BucketSize{80, 48}));
  EXPECT_EQ(cover_size(96, 64, {80, 48}), (std::array<int, 2>{53, 80}));
  EXPECT_EQ(tiny[nearest_bucket(tiny, 64, 96)], (BucketSize{48, 80}));
  EXPECT_EQ(cover_size(64, 96, {48, 80}), (std::array<int, 2>{80, 53}));
  EXPECT_EQ(tiny[nearest_bucket(tiny, 30, 100)], (BucketSize{32, 112}));  // 0.3: 0.286 is nearer than 0.333
}

// The crop lands in the bucket; the time ids' numbers: original size, crop corner in the
// resized image, and the bucket as target.
TEST(Buckets, PreprocessCropsToTheBucket) {
  RgbImage img;
  img.width = 96;
  img.height = 64;
  img.pixels.assign(96 * 64 * 3, 128);
  PreprocessOptions o;
  o.resolution = 64;
  o.center_crop = true;
  o.bucket = BucketSize{80, 48};
  std::mt19937_64 rng(0);
  const PreprocessedImage p = preprocess(img, o, rng);
  EXPECT_EQ(p.pixels.sizes(), (std::vector<std::int64_t>{3, 48, 80}));
  EXPECT_EQ(p.original_size_hw, (std::array<std::int64_t, 2>{64, 96}));
  EXPECT_EQ(p.resized_hw, (std::array<std::int64_t, 2>{53, 80}));
  EXPECT_EQ(p.crop_top_left_yx, (std::array<std::int64_t, 2>{2, 0}));  // round((53 - 48) / 2), half to even
}
