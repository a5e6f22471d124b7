#include "sdxl_dreambooth/pipeline/image_png.h"

namespace sdxl::pipeline {

void write_image_png(const std::string& path, const GeneratedImage& image, const io::PngText& text) {
  io::write_png(path, image.rgb.data_ptr<std::uint8_t>(), static_cast<int>(image.rgb.size(1)),
                static_cast<int>(image.rgb.size(0)), text);
}

}  // namespace sdxl::pipeline
