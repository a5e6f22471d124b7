#include "sdxl_dreambooth/data/buckets.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace sdxl::data {

std::vector<BucketSize> bucket_sizes(int resolution, int min_side, int max_side, int step) {
  // ref: kohya sd-scripts library/model_util.py make_bucket_resolutions.
  const std::int64_t max_area = static_cast<std::int64_t>(resolution) * resolution;
  std::vector<BucketSize> out;
  const auto add = [&](int w, int h) {
    if (std::find(out.begin(), out.end(), BucketSize{w, h}) == out.end()) out.push_back({w, h});
  };
  const int square = static_cast<int>(std::floor(std::sqrt(static_cast<double>(max_area)) / step)) * step;
  add(square, square);
  for (int width = min_side; width <= max_side; width += step) {
    const int height = std::min<std::int64_t>(max_side, (max_area / width) / step * step);
    if (height >= min_side) {
      add(width, height);
      add(height, width);
    }
  }
  std::sort(out.begin(), out.end(), [](const BucketSize& a, const BucketSize& b) {
    return a.width != b.width ? a.width < b.width : a.height < b.height;
  });
  return out;
}

std::size_t nearest_bucket(const std::vector<BucketSize>& buckets, int width, int height) {
  // ref: kohya train_util.BucketManager.select_bucket (np.abs(ar_errors).argmin()).
  const double ar = static_cast<double>(width) / height;
  std::size_t best = 0;
  double best_error = 0;
  for (std::size_t i = 0; i < buckets.size(); ++i) {
    const double error = std::abs(static_cast<double>(buckets[i].width) / buckets[i].height - ar);
    if (i == 0 || error < best_error) {
      best = i;
      best_error = error;
    }
  }
  return best;
}

std::array<int, 2> cover_size(int width, int height, const BucketSize& b) {
  const double ar = static_cast<double>(width) / height, bucket_ar = static_cast<double>(b.width) / b.height;
  const double scale = ar > bucket_ar ? static_cast<double>(b.height) / height : static_cast<double>(b.width) / width;
  const int w = static_cast<int>(width * scale + 0.5), h = static_cast<int>(height * scale + 0.5);
  return {std::max(h, b.height), std::max(w, b.width)};
}

}  // namespace sdxl::data
