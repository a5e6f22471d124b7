#include "sdxl_dreambooth/cli/rank_job.h"

#include "sdxl_dreambooth/cli/status_file.h"
#include "sdxl_dreambooth/dist/mpi_wait.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/torch_compat.h"
#include "sdxl_dreambooth/train/training_setup.h"
#include "sdxl_dreambooth/util/blas_library.h"
#include "sdxl_dreambooth/util/cpu_threads.h"
#include "sdxl_dreambooth/util/host_memory.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>

namespace sdxl::cli {

namespace {

// "auto": NCCL when built in and training runs on CUDA, else MPI.
std::string collective_backend(const config::DistributedConfig& distributed, bool cuda) {
  std::string backend = distributed.backend;
  if (backend == "auto") backend = dist::nccl_backend_built() && cuda ? "nccl" : "mpi";
  if (backend == "nccl" && !cuda) {
    throw UsageError("distributed.backend = \"nccl\" needs training on CUDA (train.device); use \"mpi\" on CPU");
  }
  return backend;
}

}  // namespace

int run_rank_job(const std::string& config_path, const std::vector<std::string>& overrides,
                 const std::function<int(RankJob&)>& body) {
  dist::MpiRuntime mpi(nullptr, nullptr);
  try {
    // Before the config: a bad variable is a usage error of every rank alike.
    const dist::DistributedDebug debug = dist::parse_distributed_debug(std::getenv("SDXL_DISTRIBUTED_DEBUG"));
    // Rank 0 reads the config once; every rank parses the same text, so a bad config is the
    // same error everywhere.
    const config::Config loaded = config::load_config_text(
        dist::read_file_collective(mpi.world(), config_path, dist::kSetupTimeoutS), config_path, overrides);
    const config::RunConfig cfg = loaded.typed();
    const Logger log(std::cerr, parse_log_level(cfg.logging.level), mpi.rank(), mpi.world_size());
    // This rank's own GPU (a UsageError when train.device = "cuda" and none is visible),
    // current before anything touches CUDA, whatever the backend.
    const torch::Device compute = train::training_device(cfg.train, mpi.local_rank());
    const bool cuda = compute.is_cuda();
    const std::string backend = collective_backend(cfg.distributed, cuda);
    const double timeout = cfg.distributed.timeout_s;
    if (cuda) compat::set_cuda_device(compute.index());
    // Before any parallel work: LibTorch's own default is 1 thread (Debian) or every core of
    // the node for every rank (PyTorch's builds).
    const util::CpuThreads threads = util::configure_cpu_threads(dist::node_affinity_masks(mpi.node(), timeout),
                                                                 static_cast<std::size_t>(mpi.local_rank()));
    log.info("CPU: " + std::to_string(threads.threads) + " intra-op thread(s) per rank (" + threads.why + ")");
    // Before the model is loaded, so that its blocks come from the heap too.
    log.info("host memory: " + util::keep_freed_host_memory(compute.is_cpu()).why);
    const util::BlasLibrary blas = util::blas_library();
    if (compute.is_cpu()) log.info("BLAS: " + blas.name);
    if (auto w = util::slow_blas_warning(blas, compute); w && mpi.rank() == 0) log.warn(*w);
    if (backend == "nccl") log.info("collectives: " + dist::collective_library_versions());
    dist::CollectiveOptions co;
    co.backend = backend;
    co.device = compute;
    co.timeout_s = timeout;
    if (debug == dist::DistributedDebug::kDetail) co.debug_sink = [&log](const std::string& line) { log.trace(line); };
    auto comm = dist::make_collectives(mpi.world(), co);
    RankJob job{mpi, cfg, log, *comm};
    const int rc = body(job);
    // The outcome before MPI_Finalize: an mpirun that was signalled itself kills the ranks
    // while they finalize, and a job script reads the program's exit code from here.
    if (const auto status = StatusFile::from_environment()) status->finished(rc);
    if (debug == dist::DistributedDebug::kDetail) {
      log.trace(std::to_string(comm->calls()) + " collectives issued by this rank (" + backend + " device collectives)");
    }
    return rc;
  } catch (const std::exception& e) {
    end_job_after(mpi, e);
  }
}

void end_job_after(const dist::MpiRuntime& mpi, const std::exception& e) {
  if (mpi.world_size() == 1) throw;  // reported by run_cli with its exit code
  const auto* err = dynamic_cast<const Error*>(&e);
  std::cerr << "error: [rank " << mpi.rank() << "/" << mpi.world_size() << "] " << message_without_backtrace(e)
            << "\n";
  if (err && !err->hint().empty()) std::cerr << "hint: " << err->hint() << "\n";
  std::cerr.flush();
  const int code = dynamic_cast<const UsageError*>(&e) ? kExitUsage : kExitFailure;
  if (const auto status = StatusFile::from_environment()) status->finished(code);
  MPI_Abort(mpi.world(), code);
  std::abort();  // MPI_Abort does not return
}

}  // namespace sdxl::cli
