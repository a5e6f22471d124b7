#include "sdxl_dreambooth/train/checkpoint_dir.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/util/strings.h"

#include <algorithm>
#include <cctype>

namespace fs = std::filesystem;

namespace sdxl::train {

std::string checkpoint_file_name(std::int64_t step) { return "checkpoint-" + std::to_string(step) + ".h5"; }

std::optional<std::int64_t> checkpoint_step_of(const std::string& name) {
  const std::string prefix = "checkpoint-", suffix = ".h5";
  if (name.size() <= prefix.size() + suffix.size() || !util::starts_with(name, prefix) ||
      !util::ends_with(name, suffix)) {
    return std::nullopt;
  }
  const std::string digits = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  if (digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), [](char c) { return std::isdigit(c); })) {
    return std::nullopt;
  }
  return std::stoll(digits);
}

std::vector<CheckpointEntry> list_checkpoints(const fs::path& dir) {
  std::vector<CheckpointEntry> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    if (auto step = checkpoint_step_of(it->path().filename().string())) out.push_back({*step, it->path()});
  }
  if (ec) throw Error("cannot list checkpoint folder " + util::quoted(dir.string()) + ": " + ec.message());
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.step < b.step; });
  return out;
}

std::vector<fs::path> prune_checkpoints(const fs::path& dir, std::int64_t keep_last) {
  std::vector<fs::path> removed;
  const auto all = list_checkpoints(dir);
  const std::size_t keep = static_cast<std::size_t>(std::max<std::int64_t>(keep_last, 1));
  std::error_code ec;
  for (std::size_t i = 0; i + keep < all.size(); ++i) {
    if (fs::remove(all[i].path, ec)) removed.push_back(all[i].path);
    if (ec) throw Error("cannot remove old checkpoint " + all[i].path.string() + ": " + ec.message());
  }
  // Stale temporaries: collected first, removed after (no removal while iterating).
  std::vector<fs::path> stale;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (util::ends_with(name, ".h5.tmp") && checkpoint_step_of(name.substr(0, name.size() - 4))) {
      stale.push_back(it->path());
    }
  }
  for (const auto& p : stale) {
    std::error_code rm;
    if (fs::remove(p, rm)) removed.push_back(p);
  }
  return removed;
}

}  // namespace sdxl::train
