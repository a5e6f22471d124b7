#include "sdxl_dreambooth/util/memory_usage.h"

#include <sys/resource.h>

#include <fstream>
#include <string>

namespace sdxl::util {

namespace {

// A "Key:   1234 kB" line of /proc/self/status (or another such file), in bytes.
std::uint64_t status_bytes(const std::string& key, const char* file = "/proc/self/status") {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) return std::stoull(line.substr(key.size())) * 1024;
  }
  return 0;
}

}  // namespace

std::uint64_t peak_rss_bytes() { return status_bytes("VmHWM:"); }

std::uint64_t rss_bytes() { return status_bytes("VmRSS:"); }

std::uint64_t available_memory_bytes() { return status_bytes("MemAvailable:", "/proc/meminfo"); }

std::uint64_t minor_page_faults() {
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return static_cast<std::uint64_t>(usage.ru_minflt);
}

bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

}  // namespace sdxl::util
