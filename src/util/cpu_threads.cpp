#include "sdxl_dreambooth/util/cpu_threads.h"

#include "sdxl_dreambooth/error.h"

#include <ATen/Parallel.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <fstream>
#include <set>

namespace sdxl::util {

CpuMask affinity_mask() {
  CpuMask mask;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    for (int cpu = 0; cpu < CPU_SETSIZE && cpu < static_cast<int>(mask.size()); ++cpu) {
      if (CPU_ISSET(cpu, &set)) mask.set(static_cast<std::size_t>(cpu));
    }
  }
  if (mask.none()) {
    const long online = sysconf(_SC_NPROCESSORS_ONLN);
    for (long cpu = 0; cpu < online && cpu < static_cast<long>(mask.size()); ++cpu) {
      mask.set(static_cast<std::size_t>(cpu));
    }
  }
  return mask;
}

std::pair<long, long> physical_core(int cpu) {
  const std::string dir = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
  long package = -1, core = -1;
  std::ifstream(dir + "physical_package_id") >> package;
  std::ifstream(dir + "core_id") >> core;
  if (package < 0 || core < 0) return {-1, cpu};
  return {package, core};
}

namespace {

// The physical cores of rank `me`'s mask, and how many of the node's ranks (itself included)
// have masks that overlap it.
struct MaskShare {
  int cores = 0;
  int ranks = 0;
};

MaskShare mask_share(const std::vector<CpuMask>& node, std::size_t me,
                     const std::function<std::pair<long, long>(int)>& core_of) {
  MaskShare share;
  if (me >= node.size()) return share;
  const CpuMask& mine = node[me];
  std::set<std::pair<long, long>> cores;
  for (std::size_t cpu = 0; cpu < mine.size(); ++cpu) {
    if (mine.test(cpu)) cores.insert(core_of(static_cast<int>(cpu)));
  }
  share.cores = static_cast<int>(cores.size());
  for (const CpuMask& m : node) share.ranks += (m & mine).any() ? 1 : 0;
  return share;
}

int threads_of(const MaskShare& share) { return std::max(1, share.cores / std::max(1, share.ranks)); }

}  // namespace

int threads_for_masks(const std::vector<CpuMask>& node, std::size_t me,
                      const std::function<std::pair<long, long>(int)>& core_of) {
  return threads_of(mask_share(node, me, core_of));
}

CpuThreads cpu_threads(const std::vector<CpuMask>& node, std::size_t me) {
  CpuThreads t;
  if (const char* env = std::getenv("OMP_NUM_THREADS"); env != nullptr && *env != '\0') {
    // OpenMP's syntax: a count, or a comma list whose first entry is the outer level's.
    char* end = nullptr;
    errno = 0;
    const long n = std::strtol(env, &end, 10);
    if (end == env || (*end != '\0' && *end != ',') || errno != 0 || n < 1 || n > INT_MAX) {
      throw UsageError("OMP_NUM_THREADS=\"" + std::string(env) + "\": expected a whole number of threads >= 1",
                       "unset it to take this rank's share of its cores");
    }
    t.threads = static_cast<int>(n);
    t.why = std::string("OMP_NUM_THREADS=") + env;
    return t;
  }
  const MaskShare share = mask_share(node, me, physical_core);
  t.threads = threads_of(share);
  t.why = std::to_string(share.cores) + " physical core(s) in this rank's affinity mask, shared by " +
          std::to_string(share.ranks) + " rank(s) of this node; OMP_NUM_THREADS overrides";
  return t;
}

CpuThreads configure_cpu_threads(const std::vector<CpuMask>& node, std::size_t me) {
  const CpuThreads t = cpu_threads(node, me);
  if (at::get_num_threads() != t.threads) at::set_num_threads(t.threads);
  return t;
}

}  // namespace sdxl::util
