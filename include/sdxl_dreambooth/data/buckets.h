// Aspect-ratio buckets (data.bucketing), kohya sd-scripts' scheme
// (library/model_util.py make_bucket_resolutions, train_util.BucketManager.select_bucket):
// sizes of at most resolution² pixels whose sides are multiples of `step` within
// [min_side, max_side]; each image goes to the bucket nearest its aspect ratio, is resized to
// cover it and cropped to it.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <vector>

namespace sdxl::data {

struct BucketSize {
  int width = 0, height = 0;
  bool operator==(const BucketSize& o) const { return width == o.width && height == o.height; }
  std::string name() const { return std::to_string(width) + "x" + std::to_string(height); }
};

// kohya's make_bucket_resolutions(max_reso = (resolution, resolution), min_side, max_side,
// step): the square of side floor(resolution / step) · step, then for each width from
// min_side to max_side by step the height min(max_side, floor(resolution² / width / step) ·
// step) when it is at least min_side, both ways round; sorted by (width, height).
std::vector<BucketSize> bucket_sizes(int resolution, int min_side, int max_side, int step);

// Index of the bucket whose width / height is nearest the image's (the first on a tie).
std::size_t nearest_bucket(const std::vector<BucketSize>& buckets, int width, int height);

// The size an image is resized to before its crop to `bucket`: scaled so that it covers the
// bucket, matching its height when the image is wider than the bucket, else its width;
// rounded as kohya does (int(x · scale + 0.5)) and never below the bucket. {height, width}.
std::array<int, 2> cover_size(int width, int height, const BucketSize& bucket);

}  // namespace sdxl::data
