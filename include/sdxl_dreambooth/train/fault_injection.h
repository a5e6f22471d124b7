// Fault injection for the failure tests only (tests/e2e/distributed_train_test.cpp):
// SDXL_TEST_FAULT="exit:R:S" makes rank R exit at step S, "stall:R:S" makes it hang there,
// "signal:R:S" sends it SIGUSR1 there (a preemption at a known step, through the real handler),
// "error:R:S" throws an sdxl::Error there (a failure the program itself reports).
// Step 0 is the start of run_training, before anything is loaded; step -1 is after the first
// round of training images is encoded (a preemption while the data is being encoded); step -2
// is each sampler step of a validation, -3 each sampler step of `generate`. "signal:load"
// sends SIGUSR1 before main, while the libraries initialize (maybe_signal_at_load, from main's
// preinit hook).
#pragma once

#include <cstdint>

namespace sdxl::train {

inline constexpr std::int64_t kFaultStepGenerate = -3;

void maybe_inject_fault(int rank, std::int64_t step);
// Reads the environment block itself: it runs before the C library has set up getenv.
void maybe_signal_at_load(char** envp) noexcept;

}  // namespace sdxl::train
