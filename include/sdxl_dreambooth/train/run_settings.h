// What a training run derives from its configuration before anything is loaded: the device,
// the precision, the seed, where outputs go. Every rank resolves the same settings.
#pragma once

#include "sdxl_dreambooth/config/run_config.h"

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <string>

namespace sdxl::train {

// Random streams of a run, each derived from train.seed with derive_seed (data_order.h).
enum RandomStream : std::uint64_t {
  kAugmentStream = 2,
  kLoraInitStream = 3,
  kNoiseStream = 4,
  kClassImageStream = 5,
  kDropoutStream = 6,  // lora.dropout's masks, per (rank, step), through LibTorch's default generators
  kTokenInitStream = 7,  // pivotal tuning: the new tokens' initial embeddings
};

struct RunSettings {
  torch::Device device = torch::kCPU;
  torch::Dtype dtype = torch::kFloat;
  std::string mixed_precision;  // train.mixed_precision: "no", "fp16", "bf16"
  std::uint64_t seed = 0;       // this rank's draw when train.seed is unset (agree_on_start settles it)
  bool prior = false;
  torch::Dtype class_image_dtype = torch::kFloat;  // prior.generation_precision, else dtype
  int resolution = 1024;
  std::filesystem::path output;
  std::filesystem::path checkpoint_dir;
  std::int64_t checkpoint_every = 500;
  std::int64_t keep_last = 0;  // 0: keep all
  bool cuda_graphs = false;
};

// Also configures the CUDA math libraries (train.cudnn_benchmark, train.allow_tf32); UsageError for settings this machine or
// build cannot run (training_setup.h).
RunSettings resolve_settings(const config::RunConfig& cfg, int local_rank);

}  // namespace sdxl::train
