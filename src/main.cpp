// sdxl-dreambooth: everything lives in the sdxl_core library; see src/cli/cli.cpp.
#include "sdxl_dreambooth/cli/command.h"
#include "sdxl_dreambooth/train/fault_injection.h"
#include "sdxl_dreambooth/train/preemption.h"

#include <cstring>

namespace {

// Runs before every shared library's initializers (the executable's .preinit_array): a `train`
// signalled by Slurm while LibTorch initializes still exits 75 and is requeued.
void preinit(int argc, char** argv, char** envp) {
  if (argc < 2 || std::strcmp(argv[1], "train") != 0) return;
  sdxl::train::catch_preemption_signals_early();
  sdxl::train::maybe_signal_at_load(envp);
}

__attribute__((section(".preinit_array"), used)) void (*const kPreinit)(int, char**, char**) = preinit;

}  // namespace

int main(int argc, char** argv) { return sdxl::cli::run_cli(argc, argv); }
