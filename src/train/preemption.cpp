#include "sdxl_dreambooth/train/preemption.h"

#include "sdxl_dreambooth/error.h"

#include <csignal>
#include <cstring>

namespace sdxl::train {
namespace {

// A signal handler can only talk to the program through a static of this type; it is the
// one piece of process-wide mutable state, owned by PreemptionSignals.
volatile std::sig_atomic_t g_signal = 0;

extern "C" void on_preemption_signal(int sig) {
  if (g_signal == 0) g_signal = sig;
}

struct sigaction g_previous[2];
const int kSignals[2] = {SIGUSR1, SIGTERM};

}  // namespace

PreemptionSignals::PreemptionSignals() {
  g_signal = 0;
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_preemption_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // collectives and file I/O in flight just continue
  for (int i = 0; i < 2; ++i) {
    if (sigaction(kSignals[i], &sa, &g_previous[i]) != 0) throw_errno("sigaction", std::to_string(kSignals[i]));
  }
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
