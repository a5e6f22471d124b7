#include "sdxl_dreambooth/data/preprocess.h"

#include "sdxl_dreambooth/data/image_resize.h"

#include <cmath>

namespace sdxl::data {

std::array<int, 2> resized_size(int height, int width, int resolution) {
  // ref: torchvision.transforms.functional._compute_resized_output_size (int size).
  if (width <= height) {
    return {static_cast<int>(static_cast<std::int64_t>(resolution) * height / width), resolution};
  }
  return {resolution, static_cast<int>(static_cast<std::int64_t>(resolution) * width / height)};
}

torch::Tensor to_unit_range_tensor(const RgbImage& image) {
  torch::Tensor t = torch::from_blob(const_cast<std::uint8_t*>(image.pixels.data()), {image.height, image.width, 3},
                                     torch::kUInt8)
                        .permute({2, 0, 1})
                        .to(torch::kFloat)
                        .div(255.0);
  return ((t - 0.5) / 0.5).contiguous();
}

PreprocessedImage preprocess(const RgbImage& upright, const PreprocessOptions& o, std::mt19937_64& rng) {
  PreprocessedImage p;
  p.original_size_hw = {upright.height, upright.width};
  const int crop_h = o.bucket ? o.bucket->height : o.resolution, crop_w = o.bucket ? o.bucket->width : o.resolution;
  const auto [h, w] = o.bucket ? cover_size(upright.width, upright.height, *o.bucket)
                               : resized_size(upright.height, upright.width, o.resolution);
  p.resized_hw = {h, w};
  RgbImage img = resize_bilinear(upright, w, h);
  if (o.flip) img = flip_horizontal(img);
  p.flipped = o.flip;
  int y = 0, x = 0;
  if (o.center_crop) {
    // torchvision CenterCrop: int(round((size - crop) / 2)), Python's round (half to even).
    y = static_cast<int>(std::nearbyint((h - crop_h) / 2.0));
    x = static_cast<int>(std::nearbyint((w - crop_w) / 2.0));
  } else {
    y = static_cast<int>(rng() % static_cast<std::uint64_t>(h - crop_h + 1));
    x = static_cast<int>(rng() % static_cast<std::uint64_t>(w - crop_w + 1));
  }
  p.crop_top_left_yx = {y, x};
  p.pixels = to_unit_range_tensor(crop(img, x, y, crop_w, crop_h));
  return p;
}

}  // namespace sdxl::data
