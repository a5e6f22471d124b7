#include "sdxl_dreambooth/data/caption_tags.h"

#include "sdxl_dreambooth/util/strings.h"

#include <algorithm>

namespace sdxl::data {

std::vector<std::string> split_tags(const std::string& caption, const std::string& separator) {
  // ref: kohya sd-scripts train_util: [t.strip() for t in caption.strip().split(separator)].
  std::vector<std::string> tags;
  const std::string text = util::trim(caption);
  std::size_t start = 0;
  for (;;) {
    const std::size_t at = text.find(separator, start);
    tags.push_back(util::trim(text.substr(start, at == std::string::npos ? std::string::npos : at - start)));
    if (at == std::string::npos) break;
    start = at + separator.size();
  }
  return tags;
}

std::string shuffle_tags(const std::string& caption, const std::string& separator, std::int64_t keep,
                         const std::function<std::vector<std::int64_t>(std::int64_t)>& permutation) {
  const std::vector<std::string> tags = split_tags(caption, separator);
  const auto fixed = static_cast<std::size_t>(std::min<std::int64_t>(keep, static_cast<std::int64_t>(tags.size())));
  std::vector<std::string> out(tags.begin(), tags.begin() + static_cast<std::ptrdiff_t>(fixed));
  const auto flex = static_cast<std::int64_t>(tags.size() - fixed);
  if (flex > 1) {
    for (std::int64_t i : permutation(flex)) out.push_back(tags[fixed + static_cast<std::size_t>(i)]);
  } else if (flex == 1) {
    out.push_back(tags.back());
  }
  std::string joined;
  for (std::size_t i = 0; i < out.size(); ++i) joined += (i ? ", " : "") + out[i];
  return joined;
}

}  // namespace sdxl::data
