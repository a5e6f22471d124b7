// The HDF5 checkpoint: everything needed to continue a run bit for bit (LoRA weights, AdamW
// moments and step counts, loss-scaler state, step and seed from which every random stream
// and the data order are derived), plus what a person or a script inspecting it wants (the
// effective config, provenance, metrics, validation images). Layout: docs/checkpoint-format.md.
#pragma once

#include "sdxl_dreambooth/model/model_fingerprint.h"
#include "sdxl_dreambooth/text/token_abstractions.h"
#include "sdxl_dreambooth/train/adamw.h"

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace sdxl::train {

inline constexpr char kCheckpointFormat[] = "sdxl-dreambooth checkpoint";
// 2: every string fixed-length (none in HDF5's unchecksummed global heap), /config/toml a
//    Fletcher-32-checked one-element dataset. 1: variable-length strings; still read.
inline constexpr std::int64_t kCheckpointFormatVersion = 2;

// One trained tensor of one adapter with its optimizer state.
struct AdapterParam {
  std::string module;  // module path, e.g. "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q"
  std::string half;    // "lora_A" (rank x in), "lora_B" (out x rank) or DoRA's "lora_magnitude_vector" (out);
                       // LoCon's convolutions: rank x in x k x k and out x rank x 1 x 1
  torch::Tensor weight;                // float32, CPU
  // Per-parameter optimizer state by name (Checkpoint::optimizer_state: AdamW's exp_avg and
  // exp_avg_sq; Prodigy adds s and p0), float32, CPU; empty when not read.
  std::map<std::string, torch::Tensor> state;
};

// The adapters of one model: "unet", "text_encoder" or "text_encoder_2".
struct ModelAdapters {
  std::string model;
  std::int64_t rank = 0;
  double alpha = 0;
  std::vector<std::string> targets;
  bool dora = false;                  // DoRA adapters: each module also has lora_magnitude_vector
  std::int64_t conv_rank = 0;         // LoCon's 3x3 convolutions (attributes only when there are any)
  double conv_alpha = 0;
  std::int64_t layers_per_block = 0;  // UNet only (kohya/SGM export names); 0 elsewhere
  std::vector<AdapterParam> params;   // per module: lora_A, lora_B (, lora_magnitude_vector)
  std::int64_t optimizer_steps = 0;   // the optimizer's update count for this model (AdamW: bias correction)
  double peak_lr = 0;                 // this model's learning rate before the schedule
};

// Pivotal tuning's trained token embeddings: /embeddings/clip_l and /embeddings/clip_g
// ([tokens, hidden] of text_encoder and text_encoder_2) with their optimizer state.
struct TrainedTokens {
  text::TokenAbstractions abstractions;  // attributes "abstractions" and "tokens"
  std::vector<AdapterParam> params;      // module "token_embeddings", half "clip_l" / "clip_g"
  std::int64_t optimizer_steps = 0;
  double peak_lr = 0;
};

struct TrainingState {
  std::int64_t step = 0;       // optimizer steps done
  std::int64_t max_steps = 0;  // of the run that wrote it
  std::int64_t epoch = 0;
  std::int64_t samples_seen = 0;  // examples drawn by all ranks (StepPlan::examples_per_step)
  std::int64_t world_size = 1;
  std::int64_t data_position = 0;  // micro-batches consumed per rank (step x grad_accum)
  std::uint64_t seed = 0;          // every random stream derives from (seed, stream, rank, step)
  std::string lr_scheduler;
  double lr = 0;  // learning rate of the last step
  double loss_scale = 1;
  std::int64_t loss_scale_good_steps = 0;
  std::int64_t skipped_steps = 0;
};

struct MetricsRow {
  std::int64_t step = 0;
  double loss = 0, lr = 0, grad_norm = 0, step_seconds = 0;
};

struct SampleImage {
  std::int64_t step = 0;
  std::int64_t prompt_index = 0, image_index = 0;
  std::string prompt;
  std::uint64_t seed = 0;
  torch::Tensor rgb;  // [H, W, 3] uint8
};

// What reading a checkpoint verified: tensor datasets read, and those stored with a
// Fletcher-32 checksum (every checkpoint written since the checksums came; older ones have none).
struct Integrity {
  std::int64_t datasets = 0;
  std::int64_t checksummed = 0;
};

struct Checkpoint {
  std::int64_t format_version = kCheckpointFormatVersion;
  TrainingState state;
  std::vector<ModelAdapters> adapters;
  std::optional<TrainedTokens> tokens;  // pivotal tuning only
  AdamWOptions optimizer;  // betas, eps, the UNet's weight decay
  std::string optimizer_type = "AdamW";  // or "Prodigy"
  std::vector<std::string> optimizer_state{"exp_avg", "exp_avg_sq"};  // per-parameter state names
  std::map<std::string, double> optimizer_scalars;  // Prodigy: d, d_max, d_numerator
  std::string config_toml;
  // Provenance attributes of /config (program_version, git_commit, torch_version, created,
  // host, base_model, ...), and the base model's weight files.
  std::map<std::string, std::string> provenance;
  std::vector<model::WeightFileFingerprint> base_model_files;
  std::vector<MetricsRow> metrics;
  std::vector<SampleImage> samples;
  torch::Tensor progress_grid;  // [H, W, 3] uint8 (samples/progress.png), or undefined
  Integrity integrity;  // filled by read_checkpoint_file

  const ModelAdapters* find(const std::string& model) const;
  std::int64_t lora_parameter_count() const;
};

struct ReadOptions {
  bool optimizer = true;
  bool samples = true;
};

// Plain write of `path` (use save_checkpoint for the durable version).
void write_checkpoint_file(const std::string& path, const Checkpoint& checkpoint);

// Reads and checks a checkpoint: the format tag, a version this program reads, every group
// and attribute it needs. Errors name the file and the missing or bad path.
Checkpoint read_checkpoint_file(const std::string& path, const ReadOptions& options = {});

// Writes `dir`/checkpoint-<step>.h5 durably (NAME.tmp, fsync, rename, fsync of `dir`) and
// returns its path; on failure the temporary is removed and nothing else changes.
std::filesystem::path save_checkpoint(const std::filesystem::path& dir, const Checkpoint& checkpoint);

}  // namespace sdxl::train
