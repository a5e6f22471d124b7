// The checkpoint folder: `checkpoint-<step>.h5` files, finding the newest, and pruning old
// ones only after a new one is committed. `*.h5.tmp` files are checkpoints whose writer died;
// they are never read and are removed by the next prune.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace sdxl::train {

std::string checkpoint_file_name(std::int64_t step);  // "checkpoint-<step>.h5"
std::optional<std::int64_t> checkpoint_step_of(const std::string& file_name);

struct CheckpointEntry {
  std::int64_t step = 0;
  std::filesystem::path path;
};

// Committed checkpoints in `dir`, by step (oldest first); empty when `dir` does not exist.
std::vector<CheckpointEntry> list_checkpoints(const std::filesystem::path& dir);

// Keeps the newest `keep_last` committed checkpoints (the newest is never removed, whatever
// `keep_last` says) and removes stale `*.h5.tmp` files. Returns what was removed.
std::vector<std::filesystem::path> prune_checkpoints(const std::filesystem::path& dir, std::int64_t keep_last);

}  // namespace sdxl::train
