#include "sdxl_dreambooth/util/cpu_threads.h"

#include <ATen/Parallel.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <set>
#include <utility>

namespace sdxl::util {
namespace {

// (package, core) of a logical CPU from sysfs; the CPU's own number when sysfs has no topology.
std::pair<long, long> physical_core(int cpu) {
  const std::string dir = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
  long package = -1, core = -1;
  std::ifstream(dir + "physical_package_id") >> package;
  std::ifstream(dir + "core_id") >> core;
  if (package < 0 || core < 0) return {-1, cpu};
  return {package, core};
}

int count_cores(const cpu_set_t& set) {
  std::set<std::pair<long, long>> cores;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cores.insert(physical_core(cpu));
  }
  return static_cast<int>(cores.size());
}

}  // namespace

int threads_for_cores(int cores_allowed, int cores_online, int ranks_on_node) {
  const int allowed = std::max(1, cores_allowed);
  const bool bound = allowed < cores_online;
  return bound ? allowed : std::max(1, allowed / std::max(1, ranks_on_node));
}

CpuThreads cpu_threads(int ranks_on_node) {
  CpuThreads t;
  if (const char* env = std::getenv("OMP_NUM_THREADS"); env != nullptr && *env != '\0') {
    t.threads = std::max(1, std::atoi(env));
    t.why = std::string("OMP_NUM_THREADS=") + env;
    return t;
  }
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) {
    t.threads = at::get_num_threads();
    t.why = "LibTorch's default (the affinity mask could not be read)";
    return t;
  }
  cpu_set_t online;
  CPU_ZERO(&online);
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  for (long cpu = 0; cpu < n && cpu < CPU_SETSIZE; ++cpu) CPU_SET(static_cast<int>(cpu), &online);
  const int cores_allowed = count_cores(allowed), cores_online = count_cores(online);
  t.threads = threads_for_cores(cores_allowed, cores_online, ranks_on_node);
  t.why = std::to_string(cores_allowed) + " physical core(s) " +
          (cores_allowed < cores_online ? "bound to this rank" : "on this node") + ", " +
          std::to_string(ranks_on_node) + " rank(s) here; OMP_NUM_THREADS overrides";
  return t;
}

CpuThreads configure_cpu_threads(int ranks_on_node) {
  const CpuThreads t = cpu_threads(ranks_on_node);
  if (at::get_num_threads() != t.threads) at::set_num_threads(t.threads);
  return t;
}

}  // namespace sdxl::util
