// kohya's caption tag shuffling (train_util.BaseDataset.process_caption, --shuffle_caption
// with --keep_tokens and --caption_separator): the caption is split at the separator, each tag
// trimmed; the first `keep` tags stay in front, the others are shuffled, and the tags are
// joined again with ", ".
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace sdxl::data {

std::vector<std::string> split_tags(const std::string& caption, const std::string& separator);

// `permutation(n)` returns a permutation of [0, n) (the caller's random stream).
std::string shuffle_tags(const std::string& caption, const std::string& separator, std::int64_t keep,
                         const std::function<std::vector<std::int64_t>(std::int64_t)>& permutation);

}  // namespace sdxl::data
