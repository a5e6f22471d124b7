// Preemption requests: SIGUSR1 (Slurm's `--signal=USR1@120`) and SIGTERM (scancel, the
// time limit) only set a flag. The training loop reads it at each step boundary, the ranks
// agree on it with one all-reduce, rank 0 writes a checkpoint, and the program exits with
// kExitPreempted (75) so the job script requeues.
#pragma once

#include <string>

namespace sdxl::train {

// Sets the same flag-setting handlers at once, before anything else of the process runs (main's
// preinit hook for `train`): LibTorch's static initializers take about half a second before
// main, in which Slurm's SIGTERM would otherwise kill the run instead of asking it to stop.
// Async-signal-safe and without allocation; the flag it sets is the one PreemptionSignals reads.
void catch_preemption_signals_early() noexcept;

class PreemptionSignals {
 public:
  // Installs the handlers (a signal caught early stays requested); the destructor restores the
  // previous ones.
  PreemptionSignals();
  ~PreemptionSignals();
  PreemptionSignals(const PreemptionSignals&) = delete;
  PreemptionSignals& operator=(const PreemptionSignals&) = delete;

  bool requested() const;
  int signal_number() const;  // the first signal received, 0 when none
  // The signal's name ("Terminated"), or "another rank" when this one received none.
  std::string describe() const;
};

// Thrown at a phase boundary before the first step when some rank was asked to stop: nothing
// is trained yet, so run_training returns a preempted summary without a checkpoint. Not an
// std::exception, so that nothing between the phase and run_training mistakes it for a failure.
struct PreemptedBeforeTraining {};

}  // namespace sdxl::train
