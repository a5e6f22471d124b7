// How many intra-op threads a CPU run uses. Debian's LibTorch 1.13 starts with one
// (at::get_num_threads() is 1 whatever the machine), so without OMP_NUM_THREADS a CPU run used
// one core of many; PyTorch's own default is the physical cores. OMP_NUM_THREADS, when set,
// still decides (LibTorch and the OpenMP build of OpenBLAS both follow it).
#pragma once

#include <string>

namespace sdxl::util {

struct CpuThreads {
  int threads = 1;
  std::string why;  // "OMP_NUM_THREADS=4", "2 physical cores, 2 ranks on this node", …
};

// The rule, given the physical cores this process may run on (its affinity mask), the physical
// cores online and the ranks on this node: a process bound to some of the cores (mpirun's
// --bind-to core, srun's task binding) gets all of its cores; an unbound one shares the
// node's with the other ranks there. At least 1.
int threads_for_cores(int cores_allowed, int cores_online, int ranks_on_node);

// What this process should use: OMP_NUM_THREADS when it is set and not empty, else
// threads_for_cores over this process's affinity mask (cores counted from sysfs topology,
// hyperthreads of one core once).
CpuThreads cpu_threads(int ranks_on_node);

// Applies cpu_threads() with at::set_num_threads and returns it.
CpuThreads configure_cpu_threads(int ranks_on_node);

}  // namespace sdxl::util
