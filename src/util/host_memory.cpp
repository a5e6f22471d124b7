#include "sdxl_dreambooth/util/host_memory.h"

#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace sdxl::util {

std::optional<std::string> user_malloc_settings(const std::function<const char*(const char*)>& getenv) {
  // The settings glibc's malloc reads at start-up that decide the same thing (mallopt(3),
  // tunables(7)); others, such as the arena count, do not stand in the way.
  for (const char* name : {"MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_TRIM_THRESHOLD_"}) {
    const char* v = getenv(name);
    if (v != nullptr && *v != '\0') return std::string(name) + "=" + v;
  }
  const char* tunables = getenv("GLIBC_TUNABLES");
  if (tunables != nullptr) {
    for (const char* t : {"glibc.malloc.mmap_max", "glibc.malloc.mmap_threshold", "glibc.malloc.top_pad",
                          "glibc.malloc.trim_threshold"}) {
      if (std::strstr(tunables, t) != nullptr) return std::string("GLIBC_TUNABLES=") + tunables;
    }
  }
  return std::nullopt;
}

HostMemoryPolicy keep_freed_host_memory(bool cpu_compute) {
  if (!cpu_compute) return {false, "malloc defaults (the run computes on a GPU)"};
  if (auto mine = user_malloc_settings([](const char* n) { return std::getenv(n); })) {
    return {false, "malloc as the environment sets it (" + *mine + ")"};
  }
#if defined(__GLIBC__)
  // -1: never trim (mallopt(3)); 0: no block gets its own mmap. Either alone makes it worse:
  // setting one fixes the other at its 128 KiB default instead of letting it adapt.
  if (mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, -1) == 1) {
    return {true, "freed blocks stay mapped for the next step (glibc malloc: no mmap per block, no trimming)"};
  }
  return {false, "malloc defaults (mallopt refused the settings)"};
#else
  return {false, "malloc defaults (not glibc)"};
#endif
}

}  // namespace sdxl::util
