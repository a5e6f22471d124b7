// DreamBooth image preprocessing as diffusers' train_dreambooth_lora_sdxl.py (0.27) does it:
// resize the shorter side to the resolution (Pillow bilinear), optional horizontal flip,
// center or random crop to a square, scale to [-1, 1]; and the original size and crop
// top-left that SDXL's time ids carry. With an aspect-ratio bucket (data/buckets.h) the image
// is resized to cover the bucket instead and cropped to it.
#pragma once

#include "sdxl_dreambooth/data/buckets.h"
#include "sdxl_dreambooth/data/image_decoder.h"

#include <torch/torch.h>

#include <array>
#include <cstdint>
#include <optional>
#include <random>

namespace sdxl::data {

struct PreprocessOptions {
  int resolution = 1024;
  bool center_crop = false;
  bool flip = false;  // this image is flipped (the caller draws it when random_flip is on)
  std::optional<BucketSize> bucket;  // crop to this size instead of resolution²
};

struct PreprocessedImage {
  torch::Tensor pixels;                         // [3, R, R] (or the bucket's) float32 in [-1, 1]
  std::array<std::int64_t, 2> original_size_hw;  // after EXIF orientation
  std::array<std::int64_t, 2> resized_hw;
  std::array<std::int64_t, 2> crop_top_left_yx;
  bool flipped = false;
};

// torchvision Resize(int): the shorter side becomes `resolution`, the longer one
// int(resolution · long / short). Returns {height, width}.
std::array<int, 2> resized_size(int height, int width, int resolution);

// `rng` draws the random crop's corner (unused with center_crop).
PreprocessedImage preprocess(const RgbImage& upright, const PreprocessOptions& options, std::mt19937_64& rng);

// [H, W, 3] uint8 → [3, H, W] float32 in [-1, 1] (ToTensor then Normalize(0.5, 0.5)).
torch::Tensor to_unit_range_tensor(const RgbImage& image);

}  // namespace sdxl::data
