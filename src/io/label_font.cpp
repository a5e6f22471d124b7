#include "sdxl_dreambooth/io/label_font.h"

#include <fontconfig/fontconfig.h>
#include <ft2build.h>
#include FT_FREETYPE_H
#include <utf8proc.h>

#include <algorithm>
#include <vector>

namespace sdxl::io {
namespace {

std::vector<std::int32_t> code_points(const std::string& s) {
  std::vector<std::int32_t> out;
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
  utf8proc_ssize_t left = static_cast<utf8proc_ssize_t>(s.size());
  while (left > 0) {
    utf8proc_int32_t cp = 0;
    const utf8proc_ssize_t n = utf8proc_iterate(p, left, &cp);
    if (n <= 0) {  // invalid UTF-8: skip the byte
      ++p;
      --left;
      continue;
    }
    out.push_back(cp);
    p += n;
    left -= n;
  }
  return out;
}

// The file fontconfig picks for a sans-serif face ("" when none).
std::string find_font_file() {
  FcConfig* config = FcInitLoadConfigAndFonts();
  if (!config) return "";
  std::string file;
  if (FcPattern* pattern = FcNameParse(reinterpret_cast<const FcChar8*>("DejaVu Sans:style=Book"))) {
    FcConfigSubstitute(config, pattern, FcMatchPattern);
    FcDefaultSubstitute(pattern);
    FcResult result = FcResultNoMatch;
    if (FcPattern* match = FcFontMatch(config, pattern, &result)) {
      FcChar8* path = nullptr;
      if (FcPatternGetString(match, FC_FILE, 0, &path) == FcResultMatch && path) {
        file = reinterpret_cast<const char*>(path);
      }
      FcPatternDestroy(match);
    }
    FcPatternDestroy(pattern);
  }
  FcConfigDestroy(config);
  return file;
}

}  // namespace

struct LabelFont::Impl {
  FT_Library library = nullptr;
  FT_Face face = nullptr;
  std::string file;
  int pixel_height = 0;
  ~Impl() {
    if (face) FT_Done_Face(face);
    if (library) FT_Done_FreeType(library);
  }
};

LabelFont::LabelFont(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LabelFont::LabelFont(LabelFont&&) noexcept = default;
LabelFont& LabelFont::operator=(LabelFont&&) noexcept = default;
LabelFont::~LabelFont() = default;

std::optional<LabelFont> LabelFont::find(int pixel_height, std::string* why) {
  auto impl = std::make_unique<Impl>();
  impl->file = find_font_file();
  if (impl->file.empty()) {
    if (why) *why = "fontconfig found no font (install fonts-dejavu-core)";
    return std::nullopt;
  }
  if (FT_Init_FreeType(&impl->library) != 0) {
    if (why) *why = "FreeType failed to initialise";
    return std::nullopt;
  }
  if (FT_New_Face(impl->library, impl->file.c_str(), 0, &impl->face) != 0 ||
      FT_Set_Pixel_Sizes(impl->face, 0, static_cast<FT_UInt>(std::max(pixel_height, 4))) != 0) {
    if (why) *why = "FreeType cannot use the font " + impl->file;
    return std::nullopt;
  }
  impl->pixel_height = std::max(pixel_height, 4);
  return LabelFont(std::move(impl));
}

const std::string& LabelFont::file() const { return impl_->file; }

int LabelFont::line_height() const {
  return static_cast<int>((impl_->face->size->metrics.ascender - impl_->face->size->metrics.descender) >> 6);
}

int LabelFont::width(const std::string& utf8) const {
  long w = 0;
  for (const auto cp : code_points(utf8)) {
    if (FT_Load_Char(impl_->face, static_cast<FT_ULong>(cp), FT_LOAD_DEFAULT) == 0) w += impl_->face->glyph->advance.x;
  }
  return static_cast<int>(w >> 6);
}

std::string LabelFont::fit(const std::string& utf8, int max_width) const {
  if (width(utf8) <= max_width) return utf8;
  // The longest prefix that fits with "..." after it, measured glyph by glyph in one pass
  // (width() sums the same advances), so a 100 KB prompt costs one walk, not one per glyph.
  const long room = (static_cast<long>(max_width) << 6) - (static_cast<long>(width("...")) << 6);
  std::string s;
  long used = 0;
  for (const auto cp : code_points(utf8)) {
    long advance = 0;
    if (FT_Load_Char(impl_->face, static_cast<FT_ULong>(cp), FT_LOAD_DEFAULT) == 0) advance = impl_->face->glyph->advance.x;
    if (used + advance > room) break;
    used += advance;
    utf8proc_uint8_t buf[4];
    s.append(reinterpret_cast<const char*>(buf), static_cast<std::size_t>(utf8proc_encode_char(cp, buf)));
  }
  return room < 0 ? std::string() : s + "...";
}

void LabelFont::draw(std::uint8_t* image, int width, int height, int x, int y, const std::string& utf8,
                     const std::uint8_t rgb[3]) const {
  FT_Face face = impl_->face;
  const int ascender = static_cast<int>(face->size->metrics.ascender >> 6);
  long pen = static_cast<long>(x) << 6;
  for (const auto cp : code_points(utf8)) {
    if (FT_Load_Char(face, static_cast<FT_ULong>(cp), FT_LOAD_RENDER) != 0) continue;
    const FT_GlyphSlot g = face->glyph;
    const FT_Bitmap& bm = g->bitmap;
    const int left = static_cast<int>(pen >> 6) + g->bitmap_left;
    const int top = y + ascender - g->bitmap_top;
    for (unsigned row = 0; row < bm.rows; ++row) {
      const int py = top + static_cast<int>(row);
      if (py < 0 || py >= height) continue;
      for (unsigned col = 0; col < bm.width; ++col) {
        const int px = left + static_cast<int>(col);
        if (px < 0 || px >= width) continue;
        const int a = bm.buffer[row * static_cast<unsigned>(bm.pitch) + col];  // 8-bit coverage
        std::uint8_t* p = image + (static_cast<std::size_t>(py) * width + px) * 3;
        for (int c = 0; c < 3; ++c) p[c] = static_cast<std::uint8_t>((rgb[c] * a + p[c] * (255 - a) + 127) / 255);
      }
    }
    pen += g->advance.x;
  }
}

}  // namespace sdxl::io
