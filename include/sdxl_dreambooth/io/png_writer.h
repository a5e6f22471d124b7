// PNG output through libpng, with text chunks (prompt, seed, steps, model) that image
// viewers and `exiftool` show. Written to NAME.tmp and renamed.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace sdxl::io {

using PngText = std::vector<std::pair<std::string, std::string>>;

// rgb: height × width × 3 bytes, row-major. Throws sdxl::Error naming the path.
void write_png(const std::string& path, const std::uint8_t* rgb, int width, int height, const PngText& text = {});

struct PngImage {
  int width = 0, height = 0;
  std::vector<std::uint8_t> rgb;  // height × width × 3
  PngText text;
};

// The PNG file's bytes in memory (TensorBoard images).
std::string encode_png(const std::uint8_t* rgb, int width, int height);

// Reads an 8-bit RGB PNG as written by write_png (tests and tools).
PngImage read_png(const std::string& path);

}  // namespace sdxl::io
