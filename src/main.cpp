// sdxl-dreambooth: everything lives in the sdxl_core library; see src/cli/cli.cpp.
#include "sdxl_dreambooth/cli/command.h"

int main(int argc, char** argv) { return sdxl::cli::run_cli(argc, argv); }
