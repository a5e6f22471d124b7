#include "sdxl_dreambooth/config/resume_changes.h"

#include "sdxl_dreambooth/config/schema.h"

#include <algorithm>
#include <array>

namespace sdxl::config {
namespace {

bool changes_a_step(const KeySpec& k) {
  static const std::array<const char*, 6> kFree{"model", "output", "checkpoint", "logging", "validation",
                                                "distributed"};
  // train.seed: the checkpoint's is used, with a warning of its own.
  static const std::array<const char*, 4> kFreeKeys{"train.max_steps", "train.epochs", "train.device",
                                                    "train.seed"};
  if (std::find(kFree.begin(), kFree.end(), k.section()) != kFree.end()) return false;
  return std::find(kFreeKeys.begin(), kFreeKeys.end(), k.key) == kFreeKeys.end();
}

std::string shown(const Value& v) { return is_set(v) ? to_toml(v) : std::string("unset"); }

std::string change(const std::string& key, const Value& was, const Value& now) {
  return key + " (" + shown(was) + " → " + shown(now) + ")";
}

}  // namespace

std::vector<std::string> resume_changes(const RunConfig& was, const RunConfig& now) {
  std::vector<std::string> out;
  for (const KeySpec& k : schema()) {
    if (!k.read || !changes_a_step(k)) continue;
    const Value a = k.read(was), b = k.read(now);
    if (a != b) out.push_back(change(k.key, a, b));
  }
  const auto& ws = was.data.subsets;
  const auto& ns = now.data.subsets;
  if (ws.size() != ns.size()) {
    out.push_back("[[data.subsets]] (" + std::to_string(ws.size()) + " tables → " + std::to_string(ns.size()) + ")");
    return out;
  }
  for (std::size_t i = 0; i < ws.size(); ++i) {
    for (const SubsetKeySpec& k : subset_schema()) {
      const Value a = k.read(ws[i]), b = k.read(ns[i]);
      if (a != b) out.push_back(change("data.subsets[" + std::to_string(i) + "]." + k.name, a, b));
    }
  }
  return out;
}

}  // namespace sdxl::config
