// Images of one size in rows and columns on white: a label centred above each column and a
// caption above each row, drawn with FreeType when a font is installed (io::LabelFont) and
// kept as PNG text chunks either way ("columns", "row R"). The base-vs-LoRA comparison and the
// training progress grid are both this.
#pragma once

#include "sdxl_dreambooth/io/png_writer.h"

#include <cstdint>
#include <string>
#include <vector>

namespace sdxl::pipeline {

struct ImageGrid {
  int width = 0, height = 0;  // of every cell
  std::vector<std::string> column_labels;
  std::vector<std::string> row_captions;               // one per row
  std::vector<std::vector<const std::uint8_t*>> rows;  // rows x columns, each height x width x 3 RGB
  io::PngText text;  // more text chunks, before the rows'; "columns" defaults to the labels
};

// The grid as one picture and the text chunks its PNG carries; `name` says in the one
// warning where labels are missing (no font).
struct ComposedGrid {
  int width = 0, height = 0;
  std::vector<std::uint8_t> pixels;  // height x width x 3
  io::PngText text;
};
ComposedGrid compose_image_grid(const ImageGrid& grid, const std::string& name);

void write_image_grid(const std::string& path, const ImageGrid& grid);

}  // namespace sdxl::pipeline
