#include "sdxl_dreambooth/pipeline/image_grid.h"

#include "sdxl_dreambooth/io/label_font.h"
#include "sdxl_dreambooth/util/strings.h"

#include <algorithm>
#include <cstring>
#include <iostream>
#include <utility>

namespace sdxl::pipeline {

ComposedGrid compose_image_grid(const ImageGrid& g, const std::string& name) {
  const int gap = 8, w = g.width, h = g.height;
  const int rows = static_cast<int>(g.rows.size());
  const int cols = static_cast<int>(g.column_labels.size());
  std::string why;
  const auto font = io::LabelFont::find(std::clamp(w / 20, 10, 36), &why);
  if (!font) std::cerr << "warning: " << name << ": labels only in the PNG text chunks: " << why << "\n";
  const int band = font ? font->line_height() + gap / 2 : 0;  // text height above the images
  const int gw = cols * w + (cols + 1) * gap, gh = band + rows * (h + band) + (rows + 1) * gap;
  std::vector<std::uint8_t> px(static_cast<std::size_t>(gw) * gh * 3, 255);
  io::PngText text = g.text;
  if (std::none_of(text.begin(), text.end(), [](const auto& kv) { return kv.first == "columns"; })) {
    text.emplace_back("columns", util::join(g.column_labels, " | "));
  }
  const std::uint8_t ink[3] = {0, 0, 0}, grey[3] = {90, 90, 90};
  for (int c = 0; c < cols && font; ++c) {
    const std::string label = font->fit(g.column_labels[static_cast<std::size_t>(c)], w);
    const int x = gap + c * (w + gap) + (w - font->width(label)) / 2;
    font->draw(px.data(), gw, gh, x, gap / 2, label, ink);
  }
  for (int r = 0; r < rows; ++r) {
    const int top = band + gap + r * (h + band + gap) + band;  // first pixel row of the images
    const auto& row = g.rows[static_cast<std::size_t>(r)];
    for (int c = 0; c < cols && c < static_cast<int>(row.size()); ++c) {
      const std::uint8_t* src = row[static_cast<std::size_t>(c)];
      for (int y = 0; y < h; ++y) {
        std::memcpy(&px[(static_cast<std::size_t>(top + y) * gw + gap + c * (w + gap)) * 3],
                    src + static_cast<std::size_t>(y) * w * 3, static_cast<std::size_t>(w) * 3);
      }
    }
    const std::string& caption = g.row_captions[static_cast<std::size_t>(r)];
    if (font) font->draw(px.data(), gw, gh, gap, top - band, font->fit(caption, gw - 2 * gap), grey);
    text.emplace_back("row " + std::to_string(r), caption);
  }
  return {gw, gh, std::move(px), std::move(text)};
}

void write_image_grid(const std::string& path, const ImageGrid& g) {
  const ComposedGrid c = compose_image_grid(g, path);
  io::write_png(path, c.pixels.data(), c.width, c.height, c.text);
}

}  // namespace sdxl::pipeline
