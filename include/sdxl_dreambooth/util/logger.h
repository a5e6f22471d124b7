// Rank-aware logger. Not a global: one is made per run and passed where needed, so tests
// can make several and capture their output.
#pragma once

#include <mutex>
#include <ostream>
#include <string>

namespace sdxl {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kTrace = 4 };

// "debug" | "info" | "warn" | "error"; throws UsageError otherwise.
LogLevel parse_log_level(const std::string& name);

class Logger {
 public:
  explicit Logger(std::ostream& out, LogLevel level = LogLevel::kInfo, int rank = 0, int world_size = 1,
                  bool timestamps = true);

  // Progress and summaries: printed by rank 0 only, so N ranks do not print N copies.
  void info(const std::string& message) const;
  void debug(const std::string& message) const;
  // Printed by every rank (a non-zero rank's lines carry a "[rank r/N]" prefix).
  void info_all_ranks(const std::string& message) const;
  void warn(const std::string& message) const;
  void error(const std::string& message) const;
  // Printed by every rank whatever the level: what the user asked to see explicitly
  // (SDXL_DISTRIBUTED_DEBUG=detail's collectives).
  void trace(const std::string& message) const;

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  LogLevel level() const { return level_; }

 private:
  void write(LogLevel level, const std::string& message) const;

  std::ostream& out_;
  LogLevel level_;
  int rank_;
  int world_size_;
  bool timestamps_;
  mutable std::mutex mutex_;  // lines from several threads never interleave
};

}  // namespace sdxl
