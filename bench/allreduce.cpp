// All-reduce cost of the LoRA gradient sync: one flat float32 buffer per step, as
// train::average_flat_gradient sends it, through the project's MPI collectives.
//   mpirun -np 2 bench_allreduce [--iters N]
// Prints, per LoRA size (SDXL rank 4 / 16 / 32: 5.8 M / 23.2 M / 46.4 M parameters), the mean
// time of one all-reduce, the bytes each rank sends, and the implied bus bandwidth.
#include "sdxl_dreambooth/dist/collectives.h"
#include "sdxl_dreambooth/dist/mpi_runtime.h"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

using namespace sdxl;

int main(int argc, char** argv) {
  dist::MpiRuntime mpi(&argc, &argv);
  int iters = 5;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--iters") && i + 1 < argc) iters = std::stoi(argv[++i]);
  }
  auto comm = dist::make_collectives(mpi.world(), {"mpi", torch::kCPU, 600, {}});
  const int n = comm->world_size();
  if (comm->rank() == 0) std::printf("%d ranks, MPI collectives, %d timed iterations after 1 warm-up\n", n, iters);
  for (const auto& [label, params] : {std::pair<const char*, std::int64_t>{"rank 4", 5806080},
                                      {"rank 16", 23224320}, {"rank 32", 46448640}}) {
    dist::DeviceBuffer buf = comm->device().buffer(params + 1, torch::kFloat);
    double total = 0;
    for (int i = 0; i <= iters; ++i) {
      comm->host().barrier("sync");
      const auto t0 = std::chrono::steady_clock::now();
      comm->device().all_reduce_sum(buf, "bench all-reduce");
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (i > 0) total += s;
    }
    const double mean = total / iters;
    const double bytes = 4.0 * static_cast<double>(params);
    // Ring all-reduce moves 2 (n-1)/n of the buffer per rank: the usual "bus bandwidth".
    const double bus = n > 1 ? bytes * 2.0 * (n - 1) / n / mean : 0.0;
    if (comm->rank() == 0) {
      std::printf("%-8s %10lld params  %8.1f MB  all-reduce %8.4f s  bus bandwidth %6.2f GB/s\n", label,
                  static_cast<long long>(params), bytes / 1e6, mean, bus / 1e9);
    }
  }
  return 0;
}
