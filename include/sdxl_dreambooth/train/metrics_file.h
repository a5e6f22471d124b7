// OUTPUT/metrics.csv: one line per optimizer step (step, loss, lr, grad_norm, step_seconds)
// for plotting and tests, flushed as steps settle. Written by rank 0 only; on resume it is
// rewritten from the checkpoint's rows, dropping steps after the checkpoint.
#pragma once

#include "sdxl_dreambooth/train/checkpoint_file.h"

#include <filesystem>
#include <fstream>
#include <vector>

namespace sdxl::train {

class MetricsFile {
 public:
  // `writer`: whether this rank writes (rank 0); elsewhere every call does nothing.
  MetricsFile(std::filesystem::path path, const std::vector<MetricsRow>& rows, bool writer);
  void append(const MetricsRow& row);
  // Throws Error naming the file when a write failed.
  void flush();

 private:
  std::filesystem::path path_;
  std::ofstream out_;
  bool writer_;
};

}  // namespace sdxl::train
