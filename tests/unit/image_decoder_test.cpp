// Decoding the inputs a data loader meets in the wild (../shared/subjects/bad): each one
// becomes a correct RGB image or fails with one error naming the file. Also EXIF
// orientation and the Pillow-compatible resize.
#include "sdxl_dreambooth/data/image_decoder.h"
#include "sdxl_dreambooth/data/image_resize.h"
#include "sdxl_dreambooth/error.h"
#include "support/reference.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

using namespace sdxl;

namespace {

std::string bad(const std::string& name) { return (test::subjects_dir() / "bad" / name).string(); }
std::string chelsea(const std::string& name) { return (test::subjects_dir() / "chelsea" / name).string(); }

void expect_error(const std::string& path, const std::string& fragment) {
  try {
    data::decode_image_file(path);
    ADD_FAILURE() << path << " decoded without an error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(path), std::string::npos) << what;
    EXPECT_NE(what.find(fragment), std::string::npos) << what;
  }
}

// Mean absolute difference per channel value, in 0..255.
double mean_abs_diff(const data::RgbImage& a, const data::RgbImage& b) {
  EXPECT_EQ(a.width, b.width);
  EXPECT_EQ(a.height, b.height);
  if (a.pixels.size() != b.pixels.size()) return 1e9;
  double s = 0;
  for (std::size_t i = 0; i < a.pixels.size(); ++i) s += std::abs(int(a.pixels[i]) - int(b.pixels[i]));
  return s / static_cast<double>(a.pixels.size());
}

data::RgbImage luma(const data::RgbImage& in) {
  // PIL's convert("L"): L = R·299/1000 + G·587/1000 + B·114/1000.
  data::RgbImage out = in;
  for (std::size_t i = 0; i < in.pixels.size(); i += 3) {
    const int l = (in.pixels[i] * 19595 + in.pixels[i + 1] * 38470 + in.pixels[i + 2] * 7471 + 0x8000) >> 16;
    out.pixels[i] = out.pixels[i + 1] = out.pixels[i + 2] = static_cast<std::uint8_t>(l);
  }
  return out;
}

class BadImages : public ::testing::Test {
 protected:
  void SetUp() override { SDXL_REQUIRE_REFERENCE(); }
};

}  // namespace

TEST_F(BadImages, UnreadableFilesAreOneErrorNamingTheFile) {
  expect_error(bad("empty.jpg"), "empty");
  expect_error(bad("not_an_image.png"), "not a JPEG, PNG or WebP image");
  expect_error(bad("truncated.jpg"), "truncated");
  expect_error(bad("does_not_exist.jpg"), "No such file");
}

TEST_F(BadImages, OtherModesBecomeTheSamePhotoInRgb) {
  // The unusual files hold one photo (451x300) in different modes; rgba.png is lossless.
  const auto rgba = data::decode_image_file(bad("rgba.png"));
  EXPECT_EQ(rgba.source_mode, "RGBA");
  ASSERT_EQ(rgba.image.width, 451);
  ASSERT_EQ(rgba.image.height, 300);
  const auto gray_ref = luma(rgba.image);
  struct Expect {
    const char* file;
    const char* mode;
    bool gray;
    double max_mean_diff;  // in levels of 0..255
  };
  // Palette quantisation and JPEG's CMYK round trip cost a few levels; an inverted, white or
  // shifted image would be off by tens.
  for (const Expect e : {Expect{"grayscale.png", "L", true, 1.0}, Expect{"gray16.png", "I;16", true, 1.0},
                         Expect{"palette.png", "P", false, 6.0}, Expect{"cmyk.jpg", "CMYK", false, 6.0}}) {
    SCOPED_TRACE(e.file);
    const auto d = data::decode_image_file(bad(e.file));
    EXPECT_EQ(d.source_mode, e.mode);
    ASSERT_EQ(d.image.pixels.size(), std::size_t(451) * 300 * 3);
    if (e.gray) {
      for (std::size_t i = 0; i < d.image.pixels.size(); i += 3) {
        ASSERT_EQ(d.image.pixels[i], d.image.pixels[i + 1]);
        ASSERT_EQ(d.image.pixels[i], d.image.pixels[i + 2]);
      }
    }
    const double diff = mean_abs_diff(d.image, e.gray ? gray_ref : rgba.image);
    EXPECT_LT(diff, e.max_mean_diff);
    std::printf("%s: mean |diff| %.3f levels\n", e.file, diff);
  }
}

TEST_F(BadImages, OnePixelImageDecodes) {
  const auto d = data::decode_image_file(bad("one_pixel.png"));
  EXPECT_EQ(d.image.width, 1);
  EXPECT_EQ(d.image.height, 1);
  EXPECT_EQ(d.image.pixels.size(), 3u);
}

TEST_F(BadImages, ExifOrientationIsApplied) {
  const auto d = data::decode_image_file(chelsea("05_exif_rotated.jpg"));
  EXPECT_EQ(d.exif_orientation, 6);
  EXPECT_EQ(d.image.width, 200);   // stored 300x200 landscape, shown upright as portrait
  EXPECT_EQ(d.image.height, 300);
}

TEST(ImageTransforms, ExifOrientationsMapCorners) {
  // 2x1 image: left pixel 10, right pixel 20.
  data::RgbImage img{2, 1, {10, 10, 10, 20, 20, 20}};
  EXPECT_EQ(data::apply_exif_orientation(img, 2).pixels[0], 20);  // mirrored
  const auto r6 = data::apply_exif_orientation(img, 6);           // 90° clockwise: left goes on top
  EXPECT_EQ(r6.width, 1);
  EXPECT_EQ(r6.height, 2);
  EXPECT_EQ(r6.pixels[0], 10);
  const auto r8 = data::apply_exif_orientation(img, 8);  // 90° counter-clockwise: right goes on top
  EXPECT_EQ(r8.pixels[0], 20);
  EXPECT_EQ(data::apply_exif_orientation(img, 1).pixels, img.pixels);
}

TEST(ImageTransforms, ResizeKeepsConstantImagesAndAveragesWhenShrinking) {
  data::RgbImage flat{37, 23, std::vector<std::uint8_t>(37 * 23 * 3, 77)};
  const auto small = data::resize_bilinear(flat, 8, 5);
  const auto big = data::resize_bilinear(flat, 100, 64);
  for (auto v : small.pixels) ASSERT_EQ(v, 77);
  for (auto v : big.pixels) ASSERT_EQ(v, 77);
  // Halving a 0/255 column pattern mixes three source columns per output (the antialiasing
  // filter widens with the scale), symmetrically: no output keeps a pure 0 or 255.
  data::RgbImage stripes{4, 1, {0, 0, 0, 255, 255, 255, 0, 0, 0, 255, 255, 255}};
  const auto half = data::resize_bilinear(stripes, 2, 1);
  EXPECT_GT(half.pixels[0], 60);
  EXPECT_LT(half.pixels[0], 128);
  EXPECT_NEAR(half.pixels[0] + half.pixels[3], 255, 1);
}

TEST(ImageTransforms, CropOutsideTheImageIsAnError) {
  data::RgbImage img{4, 4, std::vector<std::uint8_t>(48, 0)};
  EXPECT_THROW(data::crop(img, 2, 0, 4, 4), Error);
  EXPECT_EQ(data::crop(img, 1, 1, 3, 3).width, 3);
}
