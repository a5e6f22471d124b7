// A generated image as a PNG file, its settings (prompt, seed, ...) in text chunks.
#pragma once

#include "sdxl_dreambooth/io/png_writer.h"
#include "sdxl_dreambooth/pipeline/sdxl_pipeline.h"

#include <string>

namespace sdxl::pipeline {

void write_image_png(const std::string& path, const GeneratedImage& image, const io::PngText& text);

}  // namespace sdxl::pipeline
