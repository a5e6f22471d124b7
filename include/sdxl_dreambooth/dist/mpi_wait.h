// Waiting for a non-blocking MPI call under the job's deadline (distributed.timeout_s). A peer
// that is alive but stuck never hangs the job: past the deadline this rank prints which rank,
// where in the run and which collective, and calls MPI_Abort, which ends every rank.
#pragma once

#include <mpi.h>

#include <string>

namespace sdxl::dist {

// The deadline before a config is read: the default of distributed.timeout_s.
constexpr double kSetupTimeoutS = 600.0;

// Waits for `request` to complete. Polls without pausing for the first ~20 µs (a collective of
// a few bytes between ranks of one node completes in that time), then pauses from 1 µs,
// doubling up to 100 µs, so that neither a short wait costs a scheduler tick nor a long one
// takes a core. `what` and `context` name the collective in the timeout message.
void wait_with_deadline(MPI_Request& request, MPI_Comm comm, double timeout_s, const char* what,
                        const std::string& context);

// The pause schedule of wait_with_deadline, for tests: the pause after `polls` unfinished polls
// in microseconds (0: poll again at once).
long poll_pause_us(long polls);

}  // namespace sdxl::dist
