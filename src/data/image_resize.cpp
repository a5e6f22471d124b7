#include "sdxl_dreambooth/data/image_resize.h"

#include "sdxl_dreambooth/error.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace sdxl::data {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;

double bilinear_filter(double x) {
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

struct Coefficients {
  int ksize = 0;
  std::vector<int> bounds;  // per output pixel: first input index, count
  std::vector<int> k;       // per output pixel: ksize fixed-point weights
};

// ref: Resample.c precompute_coeffs + normalize_coeffs_8bpc.
Coefficients precompute(int in_size, int out_size) {
  const double support_1 = 1.0;  // bilinear
  const double scale = static_cast<double>(in_size) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = support_1 * filterscale;
  Coefficients c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.resize(2 * static_cast<std::size_t>(out_size));
  c.k.assign(static_cast<std::size_t>(out_size) * c.ksize, 0);
  std::vector<double> w(c.ksize);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    std::fill(w.begin(), w.end(), 0.0);
    for (int x = 0; x < xmax; ++x) {
      w[x] = bilinear_filter((x + xmin - center + 0.5) * ss);
      ww += w[x];
    }
    for (int x = 0; x < xmax; ++x) {
      if (ww != 0.0) w[x] /= ww;
    }
    for (int x = 0; x < c.ksize; ++x) {
      const double v = w[x] * (1 << kPrecisionBits);
      c.k[static_cast<std::size_t>(xx) * c.ksize + x] = static_cast<int>(v < 0 ? -0.5 + v : 0.5 + v);
    }
    c.bounds[2 * xx] = xmin;
    c.bounds[2 * xx + 1] = xmax;
  }
  return c;
}

inline std::uint8_t clip8(int in) {
  if (in >= (1 << kPrecisionBits << 8)) return 255;
  if (in <= 0) return 0;
  return static_cast<std::uint8_t>(in >> kPrecisionBits);
}

}  // namespace

RgbImage resize_bilinear(const RgbImage& in, int width, int height) {
  if (width < 1 || height < 1) {
    throw Error("cannot resize to " + std::to_string(width) + "x" + std::to_string(height));
  }
  if (width == in.width && height == in.height) return in;
  const Coefficients h = precompute(in.width, width);
  Coefficients v = precompute(in.height, height);
  // Horizontal pass over the rows the vertical pass will read (ref: ImagingResampleInner).
  const int ybox_first = v.bounds[0];
  const int ybox_last = v.bounds[2 * (height - 1)] + v.bounds[2 * (height - 1) + 1];
  RgbImage tmp;
  const bool need_horizontal = width != in.width;
  if (need_horizontal) {
    for (int i = 0; i < height; ++i) v.bounds[2 * i] -= ybox_first;
    tmp.width = width;
    tmp.height = ybox_last - ybox_first;
    tmp.pixels.resize(static_cast<std::size_t>(tmp.width) * tmp.height * 3);
    for (int yy = 0; yy < tmp.height; ++yy) {
      const std::uint8_t* row = &in.pixels[static_cast<std::size_t>(yy + ybox_first) * in.width * 3];
      for (int xx = 0; xx < width; ++xx) {
        const int xmin = h.bounds[2 * xx], xmax = h.bounds[2 * xx + 1];
        const int* k = &h.k[static_cast<std::size_t>(xx) * h.ksize];
        int s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
        for (int x = 0; x < xmax; ++x) {
          const std::uint8_t* p = row + (x + xmin) * 3;
          s0 += p[0] * k[x];
          s1 += p[1] * k[x];
          s2 += p[2] * k[x];
        }
        std::uint8_t* o = &tmp.pixels[(static_cast<std::size_t>(yy) * width + xx) * 3];
        o[0] = clip8(s0);
        o[1] = clip8(s1);
        o[2] = clip8(s2);
      }
    }
  }
  if (height == in.height) return tmp;  // horizontal pass only (it covered every row)
  const RgbImage& src = need_horizontal ? tmp : in;
  RgbImage out;
  out.width = width;
  out.height = height;
  out.pixels.resize(static_cast<std::size_t>(width) * height * 3);
  for (int yy = 0; yy < height; ++yy) {
    const int ymin = v.bounds[2 * yy], ymax = v.bounds[2 * yy + 1];
    const int* k = &v.k[static_cast<std::size_t>(yy) * v.ksize];
    for (int xx = 0; xx < width; ++xx) {
      int s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
      for (int y = 0; y < ymax; ++y) {
        const std::uint8_t* p = &src.pixels[(static_cast<std::size_t>(y + ymin) * width + xx) * 3];
        s0 += p[0] * k[y];
        s1 += p[1] * k[y];
        s2 += p[2] * k[y];
      }
      std::uint8_t* o = &out.pixels[(static_cast<std::size_t>(yy) * width + xx) * 3];
      o[0] = clip8(s0);
      o[1] = clip8(s1);
      o[2] = clip8(s2);
    }
  }
  return out;
}

RgbImage crop(const RgbImage& in, int x, int y, int width, int height) {
  if (x < 0 || y < 0 || width < 1 || height < 1 || x + width > in.width || y + height > in.height) {
    throw Error("crop " + std::to_string(width) + "x" + std::to_string(height) + "+" + std::to_string(x) + "+" +
                std::to_string(y) + " lies outside a " + std::to_string(in.width) + "x" + std::to_string(in.height) +
                " image");
  }
  RgbImage out;
  out.width = width;
  out.height = height;
  out.pixels.resize(static_cast<std::size_t>(width) * height * 3);
  for (int r = 0; r < height; ++r) {
    std::memcpy(&out.pixels[static_cast<std::size_t>(r) * width * 3],
                &in.pixels[(static_cast<std::size_t>(r + y) * in.width + x) * 3], static_cast<std::size_t>(width) * 3);
  }
  return out;
}

RgbImage flip_horizontal(const RgbImage& in) {
  RgbImage out = in;
  for (int y = 0; y < in.height; ++y) {
    for (int x = 0; x < in.width; ++x) {
      std::memcpy(&out.pixels[(static_cast<std::size_t>(y) * in.width + x) * 3],
                  &in.pixels[(static_cast<std::size_t>(y) * in.width + (in.width - 1 - x)) * 3], 3);
    }
  }
  return out;
}

}  // namespace sdxl::data
