// Pillow's resampling, reimplemented for 8-bit RGB: bilinear with antialiasing (the filter
// widens with the downscale factor), separable, horizontal pass then vertical, fixed-point
// coefficients — what torchvision's Resize(BILINEAR) does to a PIL image in diffusers'
// DreamBooth script. Plus the crop and flip that follow it.
#pragma once

#include "sdxl_dreambooth/data/image_decoder.h"

namespace sdxl::data {

// ref: Pillow src/libImaging/Resample.c (ImagingResample with the bilinear filter).
RgbImage resize_bilinear(const RgbImage& image, int width, int height);

// The region [x, x + width) × [y, y + height), which must lie inside the image.
RgbImage crop(const RgbImage& image, int x, int y, int width, int height);

RgbImage flip_horizontal(const RgbImage& image);

}  // namespace sdxl::data
