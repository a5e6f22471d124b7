#include "sdxl_dreambooth/dist/mpi_wait.h"

#include "sdxl_dreambooth/dist/mpi_runtime.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

namespace sdxl::dist {

long poll_pause_us(long polls) {
  constexpr long kSpinPolls = 64;  // ~20 µs of MPI_Test on one node
  if (polls < kSpinPolls) return 0;
  const long doublings = std::min<long>(polls - kSpinPolls, 7);  // 1, 2, 4, ... 64, then 100
  return std::min<long>(1L << doublings, 100);
}

void wait_with_deadline(MPI_Request& request, MPI_Comm comm, double timeout_s, const char* what,
                        const std::string& context) {
  const auto start = std::chrono::steady_clock::now();
  for (long polls = 0;; ++polls) {
    int done = 0;
    check_mpi(MPI_Test(&request, &done, MPI_STATUS_IGNORE), what);
    if (done) return;
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (waited > timeout_s) {
      int rank = 0, size = 1;
      MPI_Comm_rank(comm, &rank);
      MPI_Comm_size(comm, &size);
      std::fprintf(stderr,
                   "error: [rank %d/%d] collective '%s' at %s did not complete within distributed.timeout_s = %g s "
                   "(a peer rank is stuck or gone); aborting the job\n",
                   rank, size, what, context.c_str(), timeout_s);
      std::fflush(stderr);
      MPI_Abort(comm, 1);
      std::_Exit(1);  // MPI_Abort does not return; if it ever did, this rank still ends
    }
    if (const long pause = poll_pause_us(polls); pause > 0) std::this_thread::sleep_for(std::chrono::microseconds(pause));
  }
}

}  // namespace sdxl::dist
