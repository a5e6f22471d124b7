#include "sdxl_dreambooth/train/fault_injection.h"

#include "sdxl_dreambooth/error.h"

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

namespace sdxl::train {

void maybe_inject_fault(int rank, std::int64_t step) {
  const char* spec = std::getenv("SDXL_TEST_FAULT");
  if (!spec) return;
  char kind[16] = {0};
  int fault_rank = -1;
  long long fault_step = -1;
  if (std::sscanf(spec, "%15[a-z]:%d:%lld", kind, &fault_rank, &fault_step) != 3) return;
  if (fault_rank != rank || fault_step != step) return;
  std::fprintf(stderr, "[rank %d] SDXL_TEST_FAULT: %s at step %lld\n", rank, kind, fault_step);
  std::fflush(stderr);
  if (std::string(kind) == "exit") std::_Exit(3);
  if (std::string(kind) == "error") throw Error("SDXL_TEST_FAULT: error at step " + std::to_string(fault_step));
  if (std::string(kind) == "signal") std::raise(SIGUSR1);
  if (std::string(kind) == "stall") {
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
}

void maybe_signal_at_load(char** envp) noexcept {
  for (char** e = envp; e && *e; ++e) {
    if (std::strcmp(*e, "SDXL_TEST_FAULT=signal:load") == 0) std::raise(SIGUSR1);
  }
}

}  // namespace sdxl::train
