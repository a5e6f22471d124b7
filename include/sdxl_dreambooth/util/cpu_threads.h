// How many intra-op threads a run uses. Debian's LibTorch 1.13 starts with one
// (at::get_num_threads() is 1 whatever the machine), so without OMP_NUM_THREADS a CPU run used
// one core of many; PyTorch's builds start with every core in every rank, which oversubscribes
// a node shared by several ranks. OMP_NUM_THREADS, when set, still decides (LibTorch and the
// OpenMP build of OpenBLAS both follow it).
#pragma once

#include <bitset>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace sdxl::util {

// A set of logical CPUs: a process's affinity mask.
using CpuMask = std::bitset<1024>;

// This process's affinity mask (sched_getaffinity); every CPU online when it cannot be read.
CpuMask affinity_mask();

// The physical core a logical CPU belongs to, as (package, core) from sysfs topology, so that
// hyperthreads of one core count once; (-1, cpu) where sysfs has no topology.
std::pair<long, long> physical_core(int cpu);

// The rule. `node` holds the affinity masks of the ranks on this node, `me` indexes this rank's:
// the physical cores of its mask, divided among the ranks whose masks overlap it (itself
// included). Unbound ranks all overlap and share the node; ranks bound to their own cores
// (mpirun --bind-to core, srun's task binding) take all of theirs; ranks bound per socket share
// their socket. At least 1.
int threads_for_masks(const std::vector<CpuMask>& node, std::size_t me,
                      const std::function<std::pair<long, long>(int)>& core_of = physical_core);

struct CpuThreads {
  int threads = 1;
  std::string why;  // "OMP_NUM_THREADS=4", "2 physical core(s) in this rank's mask, shared by 2 rank(s); …"
};

// What rank `me` of the node should use: OMP_NUM_THREADS when it is set and not empty (a
// UsageError when it is not a count >= 1), else threads_for_masks.
CpuThreads cpu_threads(const std::vector<CpuMask>& node, std::size_t me);

// Applies cpu_threads() with at::set_num_threads and returns it.
CpuThreads configure_cpu_threads(const std::vector<CpuMask>& node, std::size_t me);

}  // namespace sdxl::util
