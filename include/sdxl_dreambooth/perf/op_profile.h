// `bench --profile`: where a step's time goes, operator by operator, from LibTorch's profiler
// (Kineto). On a GPU it sums the device's kernels and copies by name (their own time: kernels
// do not nest); on the CPU, where LibTorch records operators only, it sums the top-level
// operators (inclusive of the operators they call) of each thread it saw (autograd runs a CPU
// backward on the caller's thread).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sdxl::perf {

struct OpTime {
  std::string name;  // a kernel's name, or an operator's ("aten::convolution")
  std::int64_t calls = 0;
  double seconds = 0;  // total over the profiled steps
  // GPU kernels: the operators that launched them, with their input shapes ("aten::add
  // [8,1024,1280] [1280]"), most calls first (at most 3).
  std::vector<std::pair<std::string, std::int64_t>> launched_by;
};

struct OpProfile {
  std::string kind;        // "GPU kernels" or "CPU operators"
  double wall_s = 0;       // host time from the profiler's start to its end
  double total_s = 0;      // sum over every op of this kind (GPU: the device's busy time)
  std::int64_t ops = 0;    // distinct names
  std::int64_t events = 0; // calls, all names
  // Every operator the host dispatched, nested ones included, and autograd's node
  // evaluations: the host's work, counted rather than timed (CPU events of all threads).
  std::int64_t host_events = 0;
  std::int64_t steps = 0;  // what the profile covered, for per-step figures (0: not known)
  std::vector<OpTime> top; // the costliest names, by total time, descending
  // The names behind host_events, most events first (as many as top): what to cut when the
  // host, not the device, bounds a step.
  std::vector<std::pair<std::string, std::int64_t>> most_dispatched;
};

// Profiles this thread's LibTorch operators (and, with cuda, the GPU's kernels) from
// construction to finish(); the destructor stops a profiler finish() was not called on.
class OpProfiler {
 public:
  explicit OpProfiler(bool cuda);
  ~OpProfiler();
  OpProfiler(const OpProfiler&) = delete;
  OpProfiler& operator=(const OpProfiler&) = delete;

  // Stops profiling (on a GPU, after the caller synchronised it) and keeps the top_n names.
  OpProfile finish(std::size_t top_n);

 private:
  bool active_ = false;
  bool cuda_ = false;
  double start_s_ = 0;
};

nlohmann::json to_json(const OpProfile& p);
// A table: share of total, total time, calls and mean per call of each of p.top.
std::string describe(const OpProfile& p);

}  // namespace sdxl::perf
