// What `train` and `bench` share as MPI programs: the config read once on rank 0 and parsed by
// every rank, the collectives the config asks for, and one rank's failure ending the job.
#pragma once

#include "sdxl_dreambooth/config/config.h"
#include "sdxl_dreambooth/dist/collectives.h"
#include "sdxl_dreambooth/dist/mpi_runtime.h"
#include "sdxl_dreambooth/util/logger.h"

#include <functional>
#include <string>
#include <vector>

namespace sdxl::cli {

struct RankJob {
  const dist::MpiRuntime& mpi;
  const config::RunConfig& config;
  const Logger& log;
  dist::Collectives& comm;
};

// Initialises MPI, reads CONFIG (with --set overrides) and builds the collectives of
// distributed.backend (auto: NCCL when built in and training runs on CUDA, else MPI), then
// runs `body`. An exception on one of several ranks is printed with the rank and ends the
// whole job (MPI_Abort), since the others would wait in their next collective; on one rank it
// propagates to run_cli.
int run_rank_job(const std::string& config_path, const std::vector<std::string>& overrides,
                 const std::function<int(RankJob&)>& body);

// Called in a catch block of a program running on every rank: on one rank rethrows the
// exception being handled (run_cli reports it with its exit code); on several prints it with
// the rank, records the exit code in the status file and ends the whole job (MPI_Abort), since
// the other ranks would wait for this one in their next collective.
[[noreturn]] void end_job_after(const dist::MpiRuntime& mpi, const std::exception& e);

}  // namespace sdxl::cli
