#include "sdxl_dreambooth/model/sgm_unet_names.h"

#include <algorithm>
#include <cstdio>

namespace sdxl::model {
namespace {

// Parses "<prefix><i>.attentions.<j>.<rest>"; false when `path` is not of that form.
bool parse_block(const std::string& path, const char* prefix, int& i, int& j, std::string& rest) {
  int consumed = 0;
  const std::string format = std::string(prefix) + "%d.attentions.%d.%n";
  if (std::sscanf(path.c_str(), format.c_str(), &i, &j, &consumed) != 2 || consumed == 0) return false;
  rest = path.substr(static_cast<std::size_t>(consumed));
  return i >= 0 && j >= 0 && !rest.empty();
}

}  // namespace

std::optional<std::string> diffusers_to_sgm_unet_path(const std::string& path, int n) {
  int i = 0, j = 0;
  std::string rest;
  if (parse_block(path, "down_blocks.", i, j, rest)) {
    return "input_blocks." + std::to_string(1 + i * (n + 1) + j) + ".1." + rest;
  }
  if (parse_block(path, "up_blocks.", i, j, rest)) {
    return "output_blocks." + std::to_string(i * (n + 1) + j) + ".1." + rest;
  }
  const std::string mid = "mid_block.attentions.0.";
  if (path.compare(0, mid.size(), mid) == 0 && path.size() > mid.size()) {
    return "middle_block.1." + path.substr(mid.size());
  }
  return std::nullopt;
}

std::optional<int> layers_per_block_from_paths(const std::vector<std::string>& paths) {
  int max_down = -1, max_up = -1;
  for (const auto& p : paths) {
    int i = 0, j = 0;
    std::string rest;
    if (parse_block(p, "down_blocks.", i, j, rest)) max_down = std::max(max_down, j);
    if (parse_block(p, "up_blocks.", i, j, rest)) max_up = std::max(max_up, j);
  }
  if (max_up >= 0) return max_up;  // up blocks: j in [0, n]
  if (max_down >= 0) return max_down + 1;
  return std::nullopt;
}

}  // namespace sdxl::model
