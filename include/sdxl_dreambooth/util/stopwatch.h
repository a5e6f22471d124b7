// Wall-clock time of a phase, for logs and summaries.
#pragma once

#include <chrono>
#include <string>

namespace sdxl::util {

class Stopwatch {
 public:
  Stopwatch() : start_(std::chrono::steady_clock::now()) {}
  double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }
  void restart() { start_ = std::chrono::steady_clock::now(); }

 private:
  std::chrono::steady_clock::time_point start_;
};

// H:MM:SS, e.g. for an ETA.
std::string format_duration(double seconds);

}  // namespace sdxl::util
