#include "sdxl_dreambooth/cli/command.h"

#include "sdxl_dreambooth/cli/status_file.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/io/hdf5_file.h"
#include "sdxl_dreambooth/util/openblas_kernels.h"
#include "sdxl_dreambooth/util/strings.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>

namespace sdxl::cli {

std::vector<Command> all_commands() {
  return {make_version_command(), make_check_config_command(), make_config_reference_command(),
          make_model_info_command(), make_tokenize_command(), make_generate_command(),
          make_train_command(), make_bench_command(), make_export_command(), make_inspect_command(),
          make_init_tiny_command()};
}

namespace {

void print_usage(std::ostream& out, const std::vector<Command>& commands) {
  out << "sdxl-dreambooth: DreamBooth LoRA fine-tuning of Stable Diffusion XL on MPI/Slurm clusters\n\n"
      << "usage: sdxl-dreambooth <command> [options]\n"
      << "       sdxl-dreambooth <command> --help\n\n"
      << "commands:\n";
  std::size_t width = 4;
  for (const auto& c : commands) width = std::max(width, c.name.size());
  for (const auto& c : commands) {
    out << "  " << c.name << std::string(width - c.name.size() + 2, ' ') << c.summary << "\n";
  }
  out << "  help" << std::string(width - 4 + 2, ' ') << "this list\n";
}

}  // namespace

namespace {

// Output that could not be written (stdout on a full disk or /dev/full) fails the command,
// instead of exit 0 with a truncated `inspect --json`.
int with_stdout_checked(int code) {
  errno = 0;
  std::cout.flush();
  if (std::cout.good() && std::fflush(stdout) == 0 && !std::ferror(stdout)) return code;
  const int e = errno;
  std::cerr << "error: writing to the standard output failed" << (e ? std::string(": ") + std::strerror(e) : "")
            << "\n";
  return code == kExitOk ? kExitFailure : code;
}

int run_command_line(int argc, char** argv) {
  // Before anything calls the BLAS or starts a thread; `version`, and the start-up log of a CPU
  // run, say which kernels it runs.
  util::use_best_openblas_kernels();
  io::prepare_hdf5();
  const std::vector<Command> commands = all_commands();
  if (argc < 2) {
    print_usage(std::cerr, commands);
    return kExitUsage;
  }
  const std::string name = argv[1];
  if (name == "help" || name == "--help" || name == "-h") {
    if (argc >= 3) {
      for (const auto& c : commands) {
        if (c.name == argv[2]) {
          std::cout << c.help;
          return kExitOk;
        }
      }
    }
    print_usage(std::cout, commands);
    return kExitOk;
  }
  const std::string wanted = name == "--version" ? "version" : name;
  const Command* command = nullptr;
  for (const auto& c : commands) {
    if (c.name == wanted) command = &c;
  }
  if (!command) {
    std::vector<std::string> names;
    for (const auto& c : commands) names.push_back(c.name);
    std::cerr << "error: unknown command '" << name << "'";
    const std::string near = util::nearest(name, names);
    if (!near.empty()) std::cerr << " (did you mean '" << near << "'?)";
    std::cerr << "\nrun 'sdxl-dreambooth help' for the list of commands\n";
    return kExitUsage;
  }
  std::vector<std::string> args(argv + 2, argv + argc);
  for (const auto& a : args) {
    if (a == "--help" || a == "-h") {
      std::cout << command->help;
      return kExitOk;
    }
  }
  const auto run = [&]() -> int {
    try {
      return command->run(args);
    } catch (const UsageError& e) {
      std::cerr << "error: " << e.what() << "\n";
      if (!e.hint().empty()) std::cerr << "hint: " << e.hint() << "\n";
      return kExitUsage;
    } catch (const Error& e) {
      std::cerr << "error: " << e.what() << "\n";
      if (!e.hint().empty()) std::cerr << "hint: " << e.hint() << "\n";
      return kExitFailure;
    } catch (const std::exception& e) {
      if (is_out_of_memory(e)) {
        std::cerr << "error: out of memory in " << command->name << ": " << message_without_backtrace(e) << "\n"
                  << "hint: lower the batch size or the resolution (or the number of images at once), or run "
                     "where there is more memory\n";
        return kExitFailure;
      }
      // Not one of ours (LibTorch, the standard library): never its C++ stack trace.
      std::cerr << "error: internal failure in " << command->name << ": " << message_without_backtrace(e) << "\n"
                << "hint: this is a bug of sdxl-dreambooth; please report it with the command line and the log\n";
      return kExitFailure;
    }
  };
  // A job script's proof that the launch started the program (cli/status_file.h).
  const auto status = StatusFile::from_environment();
  if (status) {
    try {
      status->started(command->name);
    } catch (const Error& e) {
      std::cerr << "error: " << e.what() << "\n";
      return kExitFailure;
    }
  }
  const int code = run();
  if (status) status->finished(code);
  return code;
}

}  // namespace

int run_cli(int argc, char** argv) { return with_stdout_checked(run_command_line(argc, argv)); }

}  // namespace sdxl::cli
