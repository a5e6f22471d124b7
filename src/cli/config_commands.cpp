// `check-config` and `config-reference`: the configuration schema seen from the command line.
#include "sdxl_dreambooth/cli/args.h"
#include "sdxl_dreambooth/cli/command.h"
#include "sdxl_dreambooth/config/config.h"
#include "sdxl_dreambooth/error.h"

#include <iostream>

namespace sdxl::cli {

Command make_config_reference_command() {
  Command c;
  c.name = "config-reference";
  c.summary = "print the Markdown reference of every configuration key";
  c.help =
      "usage: sdxl-dreambooth config-reference\n\n"
      "Prints docs/config-reference.md: every TOML key with its type, default, allowed values\n"
      "and meaning, generated from the schema the parser uses.\n";
  c.run = [](const std::vector<std::string>& argv) {
    Args args(argv, {}, {});
    std::cout << config::config_reference_markdown();
    return 0;
  };
  return c;
}

Command make_check_config_command() {
  Command c;
  c.name = "check-config";
  c.summary = "validate a TOML config (with --set overrides) and print the resolved settings";
  c.help =
      "usage: sdxl-dreambooth check-config CONFIG.toml [--set section.key=value]... [--toml]\n\n"
      "Parses and validates CONFIG.toml exactly as training does: unknown keys (with the nearest\n"
      "valid key), wrong types, values out of range, missing required keys and contradictory\n"
      "settings are reported as file:line errors and the exit code is 2. On success prints the\n"
      "resolved configuration as a table (key, value, where it came from), or with --toml as a\n"
      "complete TOML file.\n\n"
      "keys:\n" + config::config_help_text();
  c.run = [](const std::vector<std::string>& argv) {
    Args args(argv, {"--toml"}, {}, {"--set"});
    if (args.positionals().size() != 1) {
      throw UsageError("check-config takes exactly one CONFIG.toml, got " +
                       std::to_string(args.positionals().size()) + " arguments");
    }
    const config::Config cfg = config::load_config_file(args.positionals()[0], args.repeated("--set"));
    std::cout << (args.flag("--toml") ? cfg.to_toml() : cfg.to_table());
    return 0;
  };
  return c;
}

}  // namespace sdxl::cli
