// `generate`'s command line, checked before the (slow) model load: the model flags fill the
// same config::ModelConfig a training config's [model] section does.
#pragma once

#include "sdxl_dreambooth/cli/args.h"
#include "sdxl_dreambooth/config/run_config.h"
#include "sdxl_dreambooth/pipeline/sdxl_pipeline.h"

#include <torch/torch.h>

#include <optional>
#include <string>

namespace sdxl::cli {

struct GenerateOptions {
  config::ModelConfig model;      // --model, --vae, --variant, --revision
  std::string out;                // --out
  pipeline::GenerationRequest request;
  bool auto_batch = true;         // --batch-size auto (the default): sized from --memory-budget
  double memory_budget_gib = 8;   // --memory-budget
  torch::Dtype dtype = torch::kFloat;
  std::string device = "cpu";     // --device cpu|cuda
  std::optional<std::string> lora;  // --lora FILE
  double lora_scale = 1;
  bool merge_lora = true;         // --lora-mode merge (default) or runtime
  bool compare_base = false;      // --compare-base: base and fine-tuned images side by side
  std::optional<std::string> embeddings;  // --embeddings FILE: pivotal tuning's <name>_emb.safetensors
};

// Every flag `generate` accepts, as Args wants them.
Args parse_generate_args(const std::vector<std::string>& argv);

// UsageError naming the flag and value for anything invalid, including a request
// pipeline::validate rejects and --device cuda without a visible GPU.
GenerateOptions generate_options(const Args& args);

}  // namespace sdxl::cli
