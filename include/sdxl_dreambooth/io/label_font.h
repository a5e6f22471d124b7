// Text drawn into images (the labels of `generate --compare-base`'s grid): FreeType renders a
// sans-serif font that fontconfig finds (DejaVu Sans on Debian: fonts-dejavu-core). Where no
// font is installed (minimal compute nodes) `find` returns nothing and callers leave the
// pixels unlabelled; the PNG text chunks still carry the labels.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace sdxl::io {

class LabelFont {
 public:
  // A sans-serif font at `pixel_height`, or nullopt (with the reason in `why`) when none.
  static std::optional<LabelFont> find(int pixel_height, std::string* why = nullptr);

  LabelFont(LabelFont&&) noexcept;
  LabelFont& operator=(LabelFont&&) noexcept;
  ~LabelFont();

  const std::string& file() const;
  int line_height() const;
  // Width in pixels of `utf8` on one line.
  int width(const std::string& utf8) const;
  // `utf8` truncated with "..." so that it fits `max_width` pixels.
  std::string fit(const std::string& utf8, int max_width) const;
  // Draws `utf8` into an RGB image (width x height x 3, row-major) with its top-left corner at
  // (x, y), blending `rgb` over the pixels by the glyphs' coverage; clipped to the image.
  void draw(std::uint8_t* image, int width, int height, int x, int y, const std::string& utf8,
            const std::uint8_t rgb[3]) const;

 private:
  struct Impl;
  explicit LabelFont(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sdxl::io
