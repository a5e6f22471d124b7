// The typed run configuration: one struct per TOML section, one member per key, named as
// the key. The schema (schema.cpp) binds every key to its member and is still the one
// declaration of type, default, range and help; `Config::typed()` fills these structs once,
// after validation. An unset optional key is an empty std::optional.
#pragma once

#include "sdxl_dreambooth/config/value.h"

#include <cstdint>
#include <optional>
#include <string>

namespace sdxl::config {

struct ModelConfig {
  std::string pretrained;
  std::optional<std::string> vae;
  std::optional<std::string> variant;
  std::string revision;
};

// One [[data.subsets]] table: a concept with its own images, prompt or captions, repeats and
// class images. Unset keys take the [data] value (config/data_subsets.h resolves them).
struct DataSubset {
  std::optional<std::string> instance_dir;
  std::optional<std::string> instance_prompt;
  std::optional<std::string> format;
  std::optional<std::string> caption_ext;
  std::optional<std::string> caption_column;
  std::optional<std::int64_t> repeats;
  std::optional<std::string> class_dir;
  std::optional<std::string> class_prompt;
  std::optional<std::int64_t> num_class_images;
  std::optional<std::int64_t> resolution;
  std::optional<bool> bucketing;
  std::optional<std::int64_t> min_bucket_resolution;
  std::optional<std::int64_t> max_bucket_resolution;
  std::optional<std::int64_t> bucket_step;
};

struct DataConfig {
  std::vector<DataSubset> subsets;  // [[data.subsets]]; empty: [data] is the one subset
  std::string instance_dir;
  std::string instance_prompt;
  std::optional<std::string> class_dir;
  std::optional<std::string> class_prompt;
  std::int64_t num_class_images = 0;
  std::int64_t resolution = 0;
  bool center_crop = false;
  bool random_flip = false;
  std::int64_t repeats = 0;
  std::optional<std::string> caption_ext;
  std::string format;
  std::string caption_column;
  double caption_dropout = 0;
  bool skip_bad_images = false;
  std::optional<std::string> cache_dir;
  bool shuffle_tags = false;
  std::int64_t keep_tokens = 0;
  std::string caption_separator;
  bool bucketing = false;
  std::optional<std::int64_t> min_bucket_resolution;
  std::optional<std::int64_t> max_bucket_resolution;
  std::int64_t bucket_step = 64;
};

struct PriorConfig {
  bool enabled = false;
  double loss_weight = 0;
  std::int64_t sample_steps = 0;
  std::int64_t sample_batch_size = 0;
  std::optional<std::string> generation_precision;
};

struct LoraConfig {
  std::int64_t rank = 0;
  std::optional<double> alpha;
  StringList targets;
  std::optional<std::string> preset;
  std::optional<std::int64_t> conv_rank;
  std::optional<double> conv_alpha;
  std::optional<StringList> blocks;
  bool use_dora = false;
  double dropout = 0;
  bool train_text_encoder = false;
  StringList text_encoder_targets;
  double text_encoder_lr = 0;
  bool train_text_encoder_ti = false;
  std::string token_abstraction;
  std::int64_t num_new_tokens_per_abstraction = 0;
  double train_text_encoder_ti_frac = 0;
};

struct TrainConfig {
  std::int64_t batch_size = 0;
  std::int64_t grad_accum = 0;
  std::optional<std::int64_t> max_steps;
  std::int64_t epochs = 0;
  double learning_rate = 0;
  bool scale_lr = false;
  std::string lr_scheduler;
  std::int64_t lr_warmup_steps = 0;
  std::int64_t lr_num_cycles = 0;
  double lr_power = 0;
  std::optional<std::int64_t> seed;
  std::string device;
  std::string mixed_precision;
  bool gradient_checkpointing = false;
  std::optional<bool> fuse_projections;
  bool cudnn_benchmark = false;
  bool allow_tf32 = false;
  bool cuda_graphs = false;
  bool fused_kernels = false;
  bool channels_last = false;
  std::optional<double> snr_gamma;
  bool edm_style = false;
  std::string loss;
  double huber_c = 0;
  std::string huber_schedule;
  std::int64_t min_timestep = 0;
  std::optional<std::int64_t> max_timestep;
  std::int64_t multires_noise_iterations = 0;
  double multires_noise_discount = 0;
  double noise_offset = 0;
  double max_grad_norm = 0;
  std::optional<std::string> prediction_type;
};

struct OptimizerConfig {
  std::string kind;
  double beta1 = 0;
  double beta2 = 0;
  double weight_decay = 0;
  double text_encoder_weight_decay = 0;
  double eps = 0;
  std::optional<double> prodigy_beta3;
  bool prodigy_decouple = true;
  bool prodigy_use_bias_correction = true;
  bool prodigy_safeguard_warmup = true;
  double prodigy_d0 = 0;
  double prodigy_d_coef = 0;
  std::optional<double> prodigy_growth_rate;
};

struct CheckpointConfig {
  std::optional<std::string> dir;
  std::int64_t every_steps = 0;
  std::optional<std::int64_t> keep_last;
  std::string resume;
};

struct ValidationConfig {
  StringList prompts;
  std::string negative_prompt;
  std::optional<std::int64_t> every_steps;
  std::optional<std::int64_t> every_epochs;
  std::int64_t num_images = 0;
  std::int64_t steps = 0;
  std::int64_t batch_size = 0;
  double guidance_scale = 0;
  std::string scheduler;
  std::optional<std::int64_t> seed;
  std::optional<std::int64_t> resolution;
  bool compare_base = true;
};

struct OutputConfig {
  std::string dir;
  bool kohya = true;
  std::optional<std::string> name;
  std::string license;
};

struct DistributedConfig {
  std::string backend;
  double timeout_s = 0;
};

struct LoggingConfig {
  std::int64_t every_steps = 0;
  bool tensorboard = true;
  std::string progress;
  std::string level;
};

struct RunConfig {
  ModelConfig model;
  DataConfig data;
  PriorConfig prior;
  LoraConfig lora;
  TrainConfig train;
  OptimizerConfig optimizer;
  CheckpointConfig checkpoint;
  ValidationConfig validation;
  OutputConfig output;
  DistributedConfig distributed;
  LoggingConfig logging;
};

// The effective configuration as TOML, exactly as Config::to_toml writes it (written to
// OUTPUT/train_config.toml and into every checkpoint).
std::string to_toml(const RunConfig& run);

}  // namespace sdxl::config
