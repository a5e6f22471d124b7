// SDXL base 1.0's full-size architecture with random weights, for benchmarks: the networks are
// built from the real configs in MANIFEST_DIR (unet.config.json, vae.config.json; the CLIP
// configs are ViT-L/14 and OpenCLIP bigG/14), and MODEL_DIR (a tiny pipeline) lends its
// tokenizers and scheduler.
#pragma once

#include "sdxl_dreambooth/pipeline/sdxl_pipeline.h"

#include <filesystem>

namespace sdxl::bench {

pipeline::SdxlPipeline full_size_pipeline(const std::filesystem::path& model_dir, const std::filesystem::path& manifest);

}  // namespace sdxl::bench
