// Decoding training images to 8-bit RGB with maintained libraries: libjpeg-turbo (JPEG),
// libpng (PNG), libwebp (WebP), libexif (EXIF orientation). The format is found from the
// file's first bytes, not its name. Every mode becomes RGB as PIL's convert("RGB") makes it,
// except 16-bit samples, which are scaled to 8 bits (PIL clips them at 255, turning a
// 16-bit photo white).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sdxl::data {

struct RgbImage {
  int width = 0, height = 0;
  std::vector<std::uint8_t> pixels;  // height × width × 3, row-major
};

struct DecodedImage {
  RgbImage image;          // upright: EXIF orientation already applied
  std::string format;      // "JPEG", "PNG", "WebP"
  std::string source_mode; // what the file held, e.g. "RGB", "L", "L;16", "P", "RGBA", "CMYK"
  int exif_orientation = 1;
};

// Largest image accepted (PIL's decompression-bomb limit): bigger files are an error.
constexpr std::uint64_t kMaxImagePixels = 178956970;

// Reads and decodes `path`. Throws sdxl::Error naming the file and what is wrong (empty,
// not an image, truncated, corrupt, too large).
DecodedImage decode_image_file(const std::string& path);
// The format `path`'s first bytes announce: "JPEG", "PNG", "WebP", or "" for anything else
// (an unreadable file included). Reads 12 bytes.
std::string image_format_of_file(const std::string& path);
// The same from bytes already in memory; `name` is used in errors.
DecodedImage decode_image(const std::vector<std::uint8_t>& bytes, const std::string& name);

// PIL's ImageOps.exif_transpose for orientation 1–8 (others leave the image unchanged).
RgbImage apply_exif_orientation(const RgbImage& image, int orientation);

}  // namespace sdxl::data
