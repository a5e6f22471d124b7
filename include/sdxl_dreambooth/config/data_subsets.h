// The concepts a run trains on: each [[data.subsets]] table with the [data] values it does not
// set itself (kohya's dataset config inherits the same way), or, without subsets, [data] as the
// one subset.
#pragma once

#include "sdxl_dreambooth/config/run_config.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sdxl::config {

struct ResolvedSubset {
  std::string key;  // prefix of its keys in messages: "data" or "data.subsets[1]"
  std::string instance_dir;
  std::string instance_prompt;
  std::string format;
  std::optional<std::string> caption_ext;
  std::string caption_column;
  std::int64_t repeats = 1;
  std::optional<std::string> class_dir;
  std::optional<std::string> class_prompt;
  std::int64_t num_class_images = 0;
  std::int64_t resolution = 1024;  // the subset's own, else data.resolution
  bool bucketing = false;
  std::optional<std::int64_t> min_bucket_resolution, max_bucket_resolution;
  std::int64_t bucket_step = 64;
};

std::vector<ResolvedSubset> resolve_subsets(const DataConfig& data);

// Whether a run's examples come in more than one size: a subset buckets by aspect ratio or
// trains at a resolution other than data.resolution.
bool several_sizes(const DataConfig& data);

// Each subset's instance prompt, without repeats, in subset order (the trigger words).
std::vector<std::string> instance_prompts(const DataConfig& data);
// Those prompts joined with "; " (the one prompt without subsets).
std::string trigger_words(const DataConfig& data);

}  // namespace sdxl::config
