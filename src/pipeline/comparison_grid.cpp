#include "sdxl_dreambooth/pipeline/comparison_grid.h"

#include "sdxl_dreambooth/io/label_font.h"
#include "sdxl_dreambooth/io/png_writer.h"
#include "sdxl_dreambooth/util/strings.h"

#include <algorithm>
#include <cstring>
#include <iostream>

namespace sdxl::pipeline {

void write_comparison_grid(const std::string& path, const std::vector<GeneratedImage>& base,
                           const std::vector<GeneratedImage>& tuned, const GenerationRequest& req,
                           const std::string& lora, double scale) {
  const int gap = 8, w = static_cast<int>(req.width), h = static_cast<int>(req.height);
  const int rows = static_cast<int>(base.size());
  std::string why;
  const auto font = io::LabelFont::find(std::clamp(w / 20, 10, 36), &why);
  if (!font) std::cerr << "warning: " << path << ": labels only in the PNG text chunks: " << why << "\n";
  const int band = font ? font->line_height() + gap / 2 : 0;  // text height above the images
  const int gw = 2 * w + 3 * gap, gh = band + rows * (h + band) + (rows + 1) * gap;
  std::vector<std::uint8_t> px(static_cast<std::size_t>(gw) * gh * 3, 255);
  const std::string tuned_label = "with LoRA (scale " + util::format_number(scale) + ")";
  io::PngText text{{"columns", "left: base model | right: " + tuned_label + " " + lora}};
  const std::uint8_t ink[3] = {0, 0, 0}, grey[3] = {90, 90, 90};
  if (font) {
    const std::string labels[2] = {font->fit("base model", w), font->fit(tuned_label, w)};
    for (int c = 0; c < 2; ++c) {
      const int x = gap + c * (w + gap) + (w - font->width(labels[c])) / 2;
      font->draw(px.data(), gw, gh, x, gap / 2, labels[c], ink);
    }
  }
  for (int r = 0; r < rows; ++r) {
    const int top = band + gap + r * (h + band + gap) + band;  // first pixel row of the images
    for (int c = 0; c < 2; ++c) {
      const auto& img = (c == 0 ? base : tuned)[static_cast<std::size_t>(r)];
      const auto* src = img.rgb.data_ptr<std::uint8_t>();
      for (int y = 0; y < h; ++y) {
        std::memcpy(&px[(static_cast<std::size_t>(top + y) * gw + gap + c * (w + gap)) * 3],
                    src + static_cast<std::size_t>(y) * w * 3, static_cast<std::size_t>(w) * 3);
      }
    }
    const auto& img = base[static_cast<std::size_t>(r)];
    const std::string caption = req.prompts[img.prompt_index] + " (image " + std::to_string(img.image_index) +
                                ", seed " + std::to_string(img.seed) + ")";
    if (font) font->draw(px.data(), gw, gh, gap, top - band, font->fit(caption, gw - 2 * gap), grey);
    text.emplace_back("row " + std::to_string(r), caption);
  }
  io::write_png(path, px.data(), gw, gh, text);
}

}  // namespace sdxl::pipeline
