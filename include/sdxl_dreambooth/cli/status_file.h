// SDXL_STATUS_FILE: how a job script learns that the program ran at all, and how it ended.
// srun can return 0 for a step that never started: a requeued job whose new step collides with
// the old step's teardown prints "task 0 launch failed" and exits 0, and the job would end
// COMPLETED with nothing trained (tests/slurm reproduces it). With the variable set, the first
// rank of the launch writes "started COMMAND" before the command runs and "exit N" when it
// returns, each by an atomic rename; jobs/train.sbatch launches again when the file never
// appeared and takes the exit code from it otherwise.
#pragma once

#include <functional>
#include <optional>
#include <string>

namespace sdxl::cli {

// This process's rank in its launch, from what the launcher exports before MPI starts:
// OMPI_COMM_WORLD_RANK (mpirun), PMIX_RANK (srun --mpi=pmix), PMI_RANK, then SLURM_PROCID
// (last: processes that mpirun starts inside an allocation inherit the batch step's 0); 0
// when none is set. A value that is not a number counts as "not the first rank". `getenv` is
// std::getenv in the program, a map in tests.
bool first_rank_of_launch(const std::function<const char*(const char*)>& getenv);

class StatusFile {
 public:
  // The file SDXL_STATUS_FILE names, on the launch's first rank; nullopt otherwise.
  static std::optional<StatusFile> from_environment();
  explicit StatusFile(std::string path) : path_(std::move(path)) {}

  // Throws sdxl::Error naming the file when it cannot be written: a job script that never
  // sees it would launch the run again.
  void started(const std::string& command) const;
  // Never throws: the command's own exit code matters more; a failure goes to stderr.
  void finished(int exit_code) const noexcept;

  const std::string& path() const { return path_; }

 private:
  void write(const std::string& text) const;
  std::string path_;
};

}  // namespace sdxl::cli
