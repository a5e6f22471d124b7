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

// Parses "<prefix><i>.<kind>.<j>.<rest>"; false when `path` is not of that form.
bool parse_part(const std::string& path, const std::string& prefix, const std::string& kind, int& i, int& j,
                std::string& rest) {
  int consumed = 0;
  const std::string format = prefix + "%d." + kind + ".%d.%n";
  if (std::sscanf(path.c_str(), format.c_str(), &i, &j, &consumed) != 2 || consumed == 0) return false;
  rest = path.substr(static_cast<std::size_t>(consumed));
  return i >= 0 && j >= 0 && !rest.empty();
}

// A resnet's layer under its SGM name; nullopt for layers without one here.
std::optional<std::string> sgm_resnet_layer(const std::string& rest) {
  static const std::pair<const char*, const char*> names[] = {{"conv1", "in_layers.2"},
                                                              {"conv2", "out_layers.3"},
                                                              {"time_emb_proj", "emb_layers.1"},
                                                              {"conv_shortcut", "skip_connection"}};
  for (const auto& [diffusers, sgm] : names) {
    if (rest == diffusers) return std::string(sgm);
  }
  return std::nullopt;
}

std::optional<std::string> resnet_or_sampler_path(const std::string& path, int n, const std::vector<int>& plain_up) {
  int i = 0, j = 0;
  std::string rest;
  const auto resnet = [&](const std::string& block) -> std::optional<std::string> {
    const auto layer = sgm_resnet_layer(rest);
    if (!layer) return std::nullopt;
    return block + "." + *layer;
  };
  if (parse_part(path, "down_blocks.", "resnets", i, j, rest)) {
    return resnet("input_blocks." + std::to_string(1 + i * (n + 1) + j) + ".0");
  }
  if (parse_part(path, "up_blocks.", "resnets", i, j, rest)) {
    return resnet("output_blocks." + std::to_string(i * (n + 1) + j) + ".0");
  }
  int k = 0, consumed = 0;
  if (std::sscanf(path.c_str(), "mid_block.resnets.%d.%n", &k, &consumed) == 1 && consumed > 0) {
    rest = path.substr(static_cast<std::size_t>(consumed));
    return resnet("middle_block." + std::to_string(2 * k));
  }
  if (parse_part(path, "down_blocks.", "downsamplers", i, j, rest) && j == 0 && rest == "conv") {
    return "input_blocks." + std::to_string((i + 1) * (n + 1)) + ".0.op";
  }
  if (parse_part(path, "up_blocks.", "upsamplers", i, j, rest) && j == 0 && rest == "conv") {
    const bool plain = std::find(plain_up.begin(), plain_up.end(), i) != plain_up.end();
    return "output_blocks." + std::to_string(i * (n + 1) + n) + (plain ? ".1.conv" : ".2.conv");
  }
  return std::nullopt;
}

}  // namespace

std::vector<int> plain_up_blocks_from_paths(const std::vector<std::string>& paths) {
  std::vector<int> with_resnets, with_attentions;
  for (const auto& p : paths) {
    int i = 0, j = 0;
    std::string rest;
    if (parse_part(p, "up_blocks.", "resnets", i, j, rest)) with_resnets.push_back(i);
    if (parse_part(p, "up_blocks.", "attentions", i, j, rest)) with_attentions.push_back(i);
  }
  std::vector<int> out;
  for (int i : with_resnets) {
    if (std::find(with_attentions.begin(), with_attentions.end(), i) == with_attentions.end() &&
        std::find(out.begin(), out.end(), i) == out.end()) {
      out.push_back(i);
    }
  }
  return out;
}

std::optional<std::string> diffusers_to_sgm_unet_path(const std::string& path, int n,
                                                      const std::vector<int>& plain_up) {
  int i = 0, j = 0;
  std::string rest;
  if (auto r = resnet_or_sampler_path(path, n, plain_up)) return r;
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
