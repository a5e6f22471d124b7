// output.dir/README.md: the model card diffusers' DreamBooth script writes (YAML front matter
// with base_model, instance_prompt, license, tags and widget entries, read by the Hugging Face
// hub), with how to use the LoRA in diffusers, ComfyUI and AUTOMATIC1111, the training
// settings and the latest loss. The latest validation images are copied beside it
// (image_K.png) for the widget, so the folder is ready for `huggingface-cli upload`. Rank 0
// writes it at each checkpoint and at the end, atomically.
#pragma once

#include "sdxl_dreambooth/config/run_config.h"
#include "sdxl_dreambooth/train/checkpoint_file.h"
#include "sdxl_dreambooth/train/run_settings.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sdxl::train {

struct ModelCardFacts {
  std::int64_t steps = 0;
  std::int64_t max_steps = 0;
  std::optional<double> last_loss;
  const std::vector<SampleImage>* samples = nullptr;  // the latest validation images, if any
  bool compare_grid = false;  // OUTPUT/compare.png holds base | fine-tuned of those images
};

// The card's text (exposed for tests).
std::string model_card_text(const config::RunConfig& cfg, const RunSettings& settings, const ModelCardFacts& facts);

void write_model_card(const config::RunConfig& cfg, const RunSettings& settings, const ModelCardFacts& facts);

}  // namespace sdxl::train
