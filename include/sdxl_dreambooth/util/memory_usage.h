// Process memory figures for logs and benchmarks.
#pragma once

#include <cstdint>

namespace sdxl::util {

// Peak resident set size of this process (VmHWM in /proc/self/status); 0 where unavailable.
std::uint64_t peak_rss_bytes();

}  // namespace sdxl::util
