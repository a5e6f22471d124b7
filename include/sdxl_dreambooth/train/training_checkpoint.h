// Between a running training job and its checkpoints: which checkpoint to resume (none,
// latest, a path; latest automatically when Slurm requeued the job), whether it fits this
// run, capturing the live adapters and optimizer state, and restoring them on every rank
// (rank 0 reads, one broadcast, so all ranks hold the same bits).
#pragma once

#include "sdxl_dreambooth/dist/collectives.h"
#include "sdxl_dreambooth/nn/lora_network.h"
#include "sdxl_dreambooth/train/optimizer.h"
#include "sdxl_dreambooth/train/checkpoint_file.h"
#include "sdxl_dreambooth/util/logger.h"

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace sdxl::train {

class PivotalTuning;

// One trained model's live objects: a LoRA network, or pivotal tuning's embeddings.
struct TrainedModel {
  std::string model;  // "unet", "text_encoder", "text_encoder_2", "embeddings"
  const nn::LoraNetwork* network = nullptr;
  Optimizer* optimizer = nullptr;  // shared by the models
  std::size_t group = 0;           // this model's parameter group in it
  double peak_lr = 0;
  int layers_per_block = 0;
  const PivotalTuning* tokens = nullptr;  // "embeddings" (network is null)

  std::vector<std::pair<std::string, torch::Tensor>> named_parameters() const;
  std::vector<torch::Tensor> parameters() const;
};

struct ResumePoint {
  std::filesystem::path path;
  Checkpoint checkpoint;
};

// Rank 0's decision. `setting` is checkpoint.resume; `requeued` is SLURM_RESTART_COUNT > 0,
// which turns "none" into "latest". "latest" with no checkpoint starts from step 0; a newest
// checkpoint that cannot be read is reported and the one before it used. "none" while `dir`
// already holds checkpoints is a UsageError: they would be overwritten.
std::optional<ResumePoint> find_resume_checkpoint(const std::string& setting, const std::filesystem::path& dir,
                                                  bool requeued, const Logger& log);

// What must match to continue a run: per model the rank, alpha and targets, which models
// train, and pivotal tuning's tokens (`tokens` empty: none). Throws UsageError naming the first
// difference.
struct AdapterSettings {
  std::string model;
  std::int64_t rank = 0;
  double alpha = 0;
  std::vector<std::string> targets;
  bool dora = false;
  std::int64_t conv_rank = 0;  // compared when the checkpoint has convolution adapters
  double conv_alpha = 0;
};
void check_resume_compatible(const Checkpoint& checkpoint, const std::string& path,
                             const std::vector<AdapterSettings>& wanted, const std::string& optimizer_type,
                             const text::TokenAbstractions& tokens = {});

// The adapters and AdamW state of `models` (tensors copied to the CPU).
std::vector<ModelAdapters> capture_adapters(const std::vector<TrainedModel>& models);
// Pivotal tuning's embeddings and their optimizer state, when `models` train them.
std::optional<TrainedTokens> capture_tokens(const std::vector<TrainedModel>& models);

// Copies the checkpoint's weights, moments and AdamW step counts into `models` on every rank:
// rank 0 passes the checkpoint (its module set and shapes are checked against the networks),
// the others nullptr. One broadcast of a flat buffer.
void restore_adapters(const Checkpoint* checkpoint, const std::string& path, const std::vector<TrainedModel>& models,
                      dist::DeviceCollectives& comm);

}  // namespace sdxl::train
