// Running the real binary from tests, and temporary folders that clean up after themselves.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace sdxl::test {

struct ProcessResult {
  int exit_code = -1;  // 128 + signal when killed by a signal
  std::string out;
  std::string err;
};

// Runs argv[0] (a path, or a name looked up in PATH) with the given arguments, capturing
// stdout and stderr; `env` entries are added to (or replace) the current environment.
ProcessResult run_process(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env = {},
                          const std::filesystem::path& cwd = {});

// Runs the sdxl-dreambooth binary built alongside the tests.
ProcessResult run_cli(const std::vector<std::string>& args, const std::map<std::string, std::string>& env = {});

// Runs the binary on `np` ranks under mpirun (as root, oversubscribed, one thread each);
// `env` entries reach every rank through `-x`.
ProcessResult run_mpirun(int np, const std::vector<std::string>& args,
                         const std::map<std::string, std::string>& env = {});

// `train CONFIG` on `ranks` ranks, preempted through the fault hook at step `step` (SIGUSR1,
// the real handler), then resumed from its latest checkpoint; tests expect exit 75, then 0.
struct PreemptedRun {
  ProcessResult stopped, resumed;
};
PreemptedRun preempt_and_resume(const std::filesystem::path& config, int step, int ranks = 1);

// Lines in a text file (0 when it does not exist).
std::size_t count_lines(const std::filesystem::path& path);

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// A tmpfs mounted on `path` (created) for the object's lifetime, with mount(8) `options` such
// as "size=4m" or "size=1m,ro"; `mounted()` false (and `error()` why) where mounting is not
// permitted, which the caller skips on.
class TmpfsMount {
 public:
  TmpfsMount(const std::filesystem::path& path, const std::string& options);
  ~TmpfsMount();
  TmpfsMount(const TmpfsMount&) = delete;
  TmpfsMount& operator=(const TmpfsMount&) = delete;
  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }

 private:
  std::filesystem::path path_;
  bool mounted_ = false;
  std::string error_;
};

void write_file(const std::filesystem::path& path, const std::string& content);
std::string read_file(const std::filesystem::path& path);

}  // namespace sdxl::test
