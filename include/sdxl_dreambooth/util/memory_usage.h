// Process memory figures for logs and benchmarks.
#pragma once

#include <cstdint>

namespace sdxl::util {

// Peak resident set size of this process (VmHWM in /proc/self/status); 0 where unavailable.
std::uint64_t peak_rss_bytes();

// Memory the node can give without swapping (MemAvailable in /proc/meminfo); 0 where unavailable.
std::uint64_t available_memory_bytes();

// Resident set size now (VmRSS); 0 where unavailable.
std::uint64_t rss_bytes();

// Minor page faults of this process so far (getrusage): pages the kernel mapped in on first
// touch. A step that re-uses memory it freed takes none (util/host_memory.h).
std::uint64_t minor_page_faults();

// Starts a new peak: the next peak_rss_bytes() counts from the current RSS (Linux
// /proc/self/clear_refs "5"). Returns false where the kernel does not support it.
bool reset_peak_rss();

}  // namespace sdxl::util
