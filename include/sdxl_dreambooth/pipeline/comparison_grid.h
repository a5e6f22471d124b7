// `generate --compare-base`'s OUT/compare.png: one row per (prompt, image), base model on the
// left, fine-tuned on the right, white gutters; a header names the columns and a caption
// above each row gives its prompt and seed (drawn with FreeType when a font is installed).
// The same labels are PNG text chunks.
#pragma once

#include "sdxl_dreambooth/pipeline/sdxl_pipeline.h"

#include <string>
#include <vector>

namespace sdxl::pipeline {

void write_comparison_grid(const std::string& path, const std::vector<GeneratedImage>& base,
                           const std::vector<GeneratedImage>& tuned, const GenerationRequest& request,
                           const std::string& lora, double scale);

}  // namespace sdxl::pipeline
