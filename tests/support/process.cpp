#include "support/process.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace sdxl::test {

ProcessResult run_process(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
                          const std::filesystem::path& cwd) {
  TempDir tmp;
  const std::string out_path = (tmp / "stdout").string(), err_path = (tmp / "stderr").string();
  // Output goes to files rather than pipes so a chatty child can never block on a full pipe.
  std::map<std::string, std::string> merged;
  for (char** e = environ; *e; ++e) {
    std::string kv(*e);
    auto eq = kv.find('=');
    if (eq != std::string::npos) merged[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  for (const auto& [k, v] : env) merged[k] = v;
  std::vector<std::string> env_strings;
  for (const auto& [k, v] : merged) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp, args;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& s : argv_copy) args.push_back(s.data());
  args.push_back(nullptr);

  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    const int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int in = open("/dev/null", O_RDONLY);
    if (out < 0 || err < 0 || in < 0) _exit(126);
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    if (!cwd.empty() && chdir(cwd.c_str()) != 0) _exit(126);
    execvpe(args[0], args.data(), envp.data());  // a bare name is looked up in PATH
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
  }
  ProcessResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_file(out_path);
  r.err = read_file(err_path);
  return r;
}

ProcessResult run_cli(const std::vector<std::string>& args, const std::map<std::string, std::string>& env) {
  std::vector<std::string> argv{SDXL_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv, env);
}

TempDir::TempDir() {
  std::string templ = (std::filesystem::temp_directory_path() / "sdxl-test-XXXXXX").string();
  if (!mkdtemp(templ.data())) throw std::runtime_error("mkdtemp failed");
  path_ = templ;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

TmpfsMount::TmpfsMount(const std::filesystem::path& path, const std::string& options) : path_(path) {
  std::filesystem::create_directories(path_);
  const ProcessResult r = run_process({"mount", "-t", "tmpfs", "-o", options, "tmpfs", path_.string()});
  mounted_ = r.exit_code == 0;
  error_ = r.err;
}

TmpfsMount::~TmpfsMount() {
  if (mounted_) run_process({"umount", "-l", path_.string()});
}

void write_file(const std::filesystem::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

ProcessResult run_mpirun(int np, const std::vector<std::string>& args, const std::map<std::string, std::string>& env) {
  std::vector<std::string> argv{SDXL_MPIEXEC, "--allow-run-as-root", "--oversubscribe", "-np", std::to_string(np)};
  for (const auto& [k, v] : env) argv.insert(argv.end(), {"-x", k + "=" + v});
  argv.push_back(SDXL_BINARY);
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv, {{"OMP_NUM_THREADS", "1"}});
}

PreemptedRun preempt_and_resume(const std::filesystem::path& config, int step, int ranks) {
  const auto run = [&](const std::vector<std::string>& args, const std::map<std::string, std::string>& env) {
    return ranks == 1 ? run_cli(args, env) : run_mpirun(ranks, args, env);
  };
  PreemptedRun r;
  r.stopped = run({"train", config.string()}, {{"SDXL_TEST_FAULT", "signal:0:" + std::to_string(step)}});
  r.resumed = run({"train", config.string(), "--set", "checkpoint.resume=\"latest\""}, {});
  return r;
}

std::size_t count_lines(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::size_t n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

}  // namespace sdxl::test
