#include "sdxl_dreambooth/util/memory_usage.h"

#include <fstream>
#include <string>

namespace sdxl::util {

std::uint64_t peak_rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;  // "VmHWM:   1234 kB"
  }
  return 0;
}

}  // namespace sdxl::util
