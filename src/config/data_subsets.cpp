#include "sdxl_dreambooth/config/data_subsets.h"

#include <algorithm>

namespace sdxl::config {

std::vector<ResolvedSubset> resolve_subsets(const DataConfig& d) {
  std::vector<ResolvedSubset> out;
  if (d.subsets.empty()) {
    out.push_back({"data", d.instance_dir, d.instance_prompt, d.format, d.caption_ext, d.caption_column, d.repeats,
                   d.class_dir, d.class_prompt, d.num_class_images, d.resolution, d.bucketing, d.min_bucket_resolution,
                   d.max_bucket_resolution, d.bucket_step});
    return out;
  }
  for (std::size_t i = 0; i < d.subsets.size(); ++i) {
    const DataSubset& s = d.subsets[i];
    ResolvedSubset r;
    r.key = "data.subsets[" + std::to_string(i) + "]";
    r.instance_dir = s.instance_dir.value_or("");
    r.instance_prompt = s.instance_prompt.value_or(d.instance_prompt);
    r.format = s.format.value_or(d.format);
    r.caption_ext = s.caption_ext ? s.caption_ext : d.caption_ext;
    r.caption_column = s.caption_column.value_or(d.caption_column);
    r.repeats = s.repeats.value_or(d.repeats);
    r.class_dir = s.class_dir ? s.class_dir : d.class_dir;
    r.class_prompt = s.class_prompt ? s.class_prompt : d.class_prompt;
    r.num_class_images = s.num_class_images.value_or(d.num_class_images);
    r.resolution = s.resolution.value_or(d.resolution);
    r.bucketing = s.bucketing.value_or(d.bucketing);
    r.min_bucket_resolution = s.min_bucket_resolution ? s.min_bucket_resolution : d.min_bucket_resolution;
    r.max_bucket_resolution = s.max_bucket_resolution ? s.max_bucket_resolution : d.max_bucket_resolution;
    r.bucket_step = s.bucket_step.value_or(d.bucket_step);
    out.push_back(std::move(r));
  }
  return out;
}

bool several_sizes(const DataConfig& data) {
  for (const ResolvedSubset& s : resolve_subsets(data)) {
    if (s.bucketing || s.resolution != data.resolution) return true;
  }
  return false;
}

std::vector<std::string> instance_prompts(const DataConfig& data) {
  std::vector<std::string> out;
  for (const ResolvedSubset& s : resolve_subsets(data)) {
    if (std::find(out.begin(), out.end(), s.instance_prompt) == out.end()) out.push_back(s.instance_prompt);
  }
  return out;
}

std::string trigger_words(const DataConfig& data) {
  std::string out;
  for (const std::string& p : instance_prompts(data)) out += (out.empty() ? "" : "; ") + p;
  return out;
}

}  // namespace sdxl::config
