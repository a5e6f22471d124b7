#include "sdxl_dreambooth/train/preemption.h"

#include "sdxl_dreambooth/error.h"

#include <pthread.h>

#include <csignal>
#include <cstring>

namespace sdxl::train {
namespace {

// A signal handler can only talk to the program through a static of this type; it is the
// one piece of process-wide mutable state, set by the handlers (installed early or by
// PreemptionSignals) and read through PreemptionSignals.
volatile std::sig_atomic_t g_signal = 0;

extern "C" void on_preemption_signal(int sig) {
  if (g_signal == 0) g_signal = sig;
}

struct sigaction g_previous[2];
const int kSignals[2] = {SIGUSR1, SIGTERM};

struct sigaction flag_setting_action() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_preemption_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // collectives and file I/O in flight just continue
  return sa;
}

// A launcher that blocks them would keep every preemption request from the run (the mask
// is inherited across exec); one already pending arrives as soon as they are unblocked.
void unblock_preemption_signals() noexcept {
  sigset_t set;
  sigemptyset(&set);
  for (int s : kSignals) sigaddset(&set, s);
  (void)pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
}

}  // namespace

void catch_preemption_signals_early() noexcept {
  const struct sigaction sa = flag_setting_action();
  // Nothing to report to this early: a failure leaves the default action, as before.
  for (int s : kSignals) (void)sigaction(s, &sa, nullptr);
  unblock_preemption_signals();
}

PreemptionSignals::PreemptionSignals() {
  // A signal caught early (catch_preemption_signals_early) stays requested.
  const struct sigaction sa = flag_setting_action();
  for (int i = 0; i < 2; ++i) {
    if (sigaction(kSignals[i], &sa, &g_previous[i]) != 0) throw_errno("sigaction", std::to_string(kSignals[i]));
  }
  unblock_preemption_signals();
}

PreemptionSignals::~PreemptionSignals() {
  for (int i = 0; i < 2; ++i) sigaction(kSignals[i], &g_previous[i], nullptr);
}

bool PreemptionSignals::requested() const { return g_signal != 0; }
int PreemptionSignals::signal_number() const { return g_signal; }

std::string PreemptionSignals::describe() const {
  const int s = signal_number();
  return s ? std::string(strsignal(s)) : std::string("another rank");
}

}  // namespace sdxl::train
