// Git-style subcommands. A subcommand is registered only when it works end to end.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace sdxl::cli {

struct Command {
  std::string name;
  std::string summary;  // one line for `sdxl-dreambooth help`
  std::string help;     // the full text of `sdxl-dreambooth NAME --help`
  std::function<int(const std::vector<std::string>& args)> run;
};

// Each subcommand lives in its own file as make_<name>_command().
Command make_version_command();
Command make_config_reference_command();
Command make_check_config_command();
Command make_model_info_command();
Command make_tokenize_command();
Command make_generate_command();
Command make_train_command();
Command make_bench_command();
Command make_export_command();
Command make_inspect_command();
Command make_init_tiny_command();

// The registered subcommands in the order `help` lists them.
std::vector<Command> all_commands();

// The program: dispatches argv[1] to a subcommand, maps exceptions to exit codes.
int run_cli(int argc, char** argv);

}  // namespace sdxl::cli
