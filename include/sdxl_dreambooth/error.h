// Error types and checked-call helpers. Every failure a user can meet is one of these,
// carrying what failed with which input, and optionally a hint on what to do next.
#pragma once

#include <exception>
#include <stdexcept>
#include <string>

namespace sdxl {

// Process exit codes, documented in README.md.
enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,      // runtime failure (I/O, numerical, device, peer rank)
  kExitUsage = 2,        // bad command line or configuration; nothing was written
  kExitPreempted = 75,   // checkpointed on SIGUSR1/SIGTERM; the job script requeues (EX_TEMPFAIL)
};

// A runtime failure: file I/O, corrupt input, a failed library call.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what, std::string hint = {})
      : std::runtime_error(what), hint_(std::move(hint)) {}
  const std::string& hint() const { return hint_; }

 private:
  std::string hint_;
};

// Bad user input on the command line or in a config file (exit code 2).
class UsageError : public Error {
 public:
  using Error::Error;
};

// An exception's message without the C++ stack trace LibTorch appends to its own errors.
std::string message_without_backtrace(const std::exception& e);
// An allocation that failed (host or GPU memory): the run asked for more than there is, which
// is no bug of the program.
bool is_out_of_memory(const std::exception& e);

// errno-based failure of a POSIX file call, e.g. throw_errno("open", path).
[[noreturn]] void throw_errno(const std::string& operation, const std::string& path);

}  // namespace sdxl
