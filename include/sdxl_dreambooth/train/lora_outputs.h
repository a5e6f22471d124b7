// The LoRA files a finished run leaves in output.dir, written by rank 0:
// pytorch_lora_weights.safetensors with diffusers' keys (what pipe.load_lora_weights reads),
// and with output.kohya <output.name>.safetensors with kohya's names and ss_* metadata (what
// ComfyUI, AUTOMATIC1111 and kohya's scripts load: diffusers' keys load in neither). Both
// carry the run's provenance in their metadata. Pivotal tuning adds <output.name>_emb.safetensors
// (model/token_embeddings_file.h).
#pragma once

#include "sdxl_dreambooth/config/run_config.h"
#include "sdxl_dreambooth/train/run_settings.h"
#include "sdxl_dreambooth/train/trained_adapters.h"
#include "sdxl_dreambooth/util/logger.h"

#include <cstdint>
#include <ctime>
#include <array>
#include <optional>
#include <string>
#include <vector>

namespace sdxl::train {

// What the metadata says about the run besides the config.
struct RunFacts {
  std::int64_t steps = 0;
  std::int64_t epoch = 0;
  std::int64_t batches_per_epoch = 0;
  std::int64_t instance_images = 0;
  std::int64_t class_images = 0;
  std::int64_t train_examples = 0;              // per epoch: images x repeats, every subset
  std::vector<std::int64_t> subset_images;  // instance images per subset (config::resolve_subsets order)
  // Each size the examples trained at ({width, height}) and its examples (kohya's bucket_info).
  std::vector<std::pair<std::array<int, 2>, std::int64_t>> buckets;
  std::time_t started_at = 0;
  double learning_rate = 0;  // the UNet's peak rate (train.scale_lr applied)
};

struct LoraFiles {
  std::string diffusers;
  std::optional<std::string> kohya;  // unset without output.kohya, or for a UNet with no SGM names
  std::optional<std::string> embeddings;  // pivotal tuning: <output.name>_emb.safetensors
};

// output.name, else the name of the output.dir folder ("lora" when it has none).
std::string run_name(const config::OutputConfig& output);

LoraFiles write_lora_outputs(const TrainedAdapters& adapters, const config::RunConfig& cfg,
                             const RunSettings& settings, const RunFacts& facts, const Logger& log);

}  // namespace sdxl::train
