#include "sdxl_dreambooth/util/logger.h"

#include "sdxl_dreambooth/error.h"

#include <chrono>
#include <ctime>
#include <sstream>

namespace sdxl {

LogLevel parse_log_level(const std::string& name) {
  if (name == "debug") return LogLevel::kDebug;
  if (name == "info") return LogLevel::kInfo;
  if (name == "warn") return LogLevel::kWarn;
  if (name == "error") return LogLevel::kError;
  throw UsageError("unknown log level '" + name + "': expected debug, info, warn or error");
}

Logger::Logger(std::ostream& out, LogLevel level, int rank, int world_size, bool timestamps)
    : out_(out), level_(level), rank_(rank), world_size_(world_size), timestamps_(timestamps) {}

void Logger::info(const std::string& message) const {
  if (rank_ == 0) write(LogLevel::kInfo, message);
}
void Logger::debug(const std::string& message) const { write(LogLevel::kDebug, message); }
void Logger::info_all_ranks(const std::string& message) const { write(LogLevel::kInfo, message); }
void Logger::warn(const std::string& message) const { write(LogLevel::kWarn, message); }
void Logger::error(const std::string& message) const { write(LogLevel::kError, message); }
void Logger::trace(const std::string& message) const { write(LogLevel::kTrace, message); }

void Logger::write(LogLevel level, const std::string& message) const {
  if (level < level_) return;
  static const char* const kNames[] = {"DEBUG", "INFO ", "WARN ", "ERROR", "TRACE"};
  std::ostringstream prefix;
  if (timestamps_) {
    const auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    std::tm tm{};
    localtime_r(&now, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    prefix << buf << " ";
  }
  prefix << kNames[static_cast<int>(level)] << " ";
  if (rank_ != 0) prefix << "[rank " << rank_ << "/" << world_size_ << "] ";
  // A multi-line message keeps the prefix on every line, so grep by rank works.
  std::ostringstream text;
  std::istringstream lines(message);
  std::string line;
  while (std::getline(lines, line)) text << prefix.str() << line << "\n";
  std::lock_guard<std::mutex> lock(mutex_);
  out_ << text.str() << std::flush;
}

}  // namespace sdxl
