// The last resort of an aborting rank: NCCL's abort has hung in the field (NVIDIA/nccl #992,
// #549), and so can any call made while a communicator is broken. Armed before such a call, it
// ends the process after `seconds` with `code` whatever the calling thread is stuck in, so the
// launcher always ends the job.
#pragma once

namespace sdxl::dist {

// Starts a detached thread that sleeps `seconds` and calls std::_Exit(code); where no thread
// can be started, alarm() ends the process instead (SIGALRM's default action). Never returns an
// error: it is called on paths that are already failing.
void arm_fallback_exit(double seconds, int code);

}  // namespace sdxl::dist
