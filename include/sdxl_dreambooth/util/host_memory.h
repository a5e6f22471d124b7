// Keeping freed host memory in the process for the next step. glibc's malloc gives every block
// of 128 KiB and more (a threshold it raises to at most 32 MiB as such blocks are freed) its own
// mmap, unmapped again on free, and returns free memory at the top of its heap to the kernel.
// A training step on the CPU frees its activations and allocates them again in the next step,
// so every step faulted all of their pages in anew, each fault a kernel entry and a zeroed
// page (docs/benchmarks.md: 216,000 faults per full-size step at 128 px; about 10 µs each on
// the CI VM). With mmap off and trimming off, a step's blocks come back from the heap already
// mapped. Peak RSS stays what it was; the process keeps it until it exits.
#pragma once

#include <functional>
#include <optional>
#include <string>

namespace sdxl::util {

struct HostMemoryPolicy {
  bool kept = false;  // mallopt applied: freed blocks stay mapped for reuse
  std::string why;    // for the log: what was done, or why nothing was
};

// The user's own settings of what keep_freed_host_memory sets, if any: MALLOC_MMAP_MAX_,
// MALLOC_MMAP_THRESHOLD_, MALLOC_TOP_PAD_, MALLOC_TRIM_THRESHOLD_ or the same glibc.malloc
// tunables in GLIBC_TUNABLES, named as found; nullopt when there are none. `getenv` is
// std::getenv in the program, a map in tests.
std::optional<std::string> user_malloc_settings(const std::function<const char*(const char*)>& getenv);

// For a run that computes on the CPU (`cpu_compute`): turns off glibc's per-block mmap and its
// heap trimming, unless the user set malloc options of their own (those decide) or this is not
// glibc. GPU runs keep the defaults: their host memory after loading is small, and weights
// staged on the host on the way to the GPU should go back to the kernel.
HostMemoryPolicy keep_freed_host_memory(bool cpu_compute);

}  // namespace sdxl::util
