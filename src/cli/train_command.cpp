// `train`: a DreamBooth LoRA training run from a TOML config, on one process or on every rank
// of an MPI job (mpirun / srun --mpi=pmix).
#include "sdxl_dreambooth/cli/args.h"
#include "sdxl_dreambooth/cli/command.h"
#include "sdxl_dreambooth/config/config.h"
#include "sdxl_dreambooth/dist/collectives.h"
#include "sdxl_dreambooth/dist/mpi_runtime.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/train/trainer.h"
#include "sdxl_dreambooth/util/logger.h"

#include <torch/torch.h>

#include <algorithm>
#include <iostream>

namespace sdxl::cli {

Command make_train_command() {
  Command c;
  c.name = "train";
  c.summary = "DreamBooth LoRA fine-tuning of SDXL from a TOML config";
  c.help =
      "usage: sdxl-dreambooth train CONFIG.toml [--set section.key=value]...\n"
      "       mpirun -np N sdxl-dreambooth train CONFIG.toml ...\n\n"
      "Validates the config (as check-config does), loads the base pipeline, generates missing\n"
      "class images when prior preservation is on, encodes every training image and prompt once,\n"
      "trains LoRA adapters on the UNet's attention projections and writes\n"
      "OUTPUT/pytorch_lora_weights.safetensors (diffusers format), validation images under\n"
      "OUTPUT/samples/step_N/, the effective config as OUTPUT/train_config.toml and HDF5\n"
      "checkpoints OUTPUT/checkpoints/checkpoint-STEP.h5 every checkpoint.every_steps and at the end.\n"
      "checkpoint.resume = \"latest\" (automatic when Slurm requeued the job) continues the newest\n"
      "checkpoint bit for bit. SIGUSR1 or SIGTERM: checkpoint at the next step, exit code 75.\n"
      "Logs step, loss, learning rate, gradient norm, images/s and ETA every\n"
      "logging.every_steps steps, and a time split and peak memory at the end.\n"
      "Under MPI every rank trains on its share of each global batch (batch_size x ranks x\n"
      "grad_accum), gradients are averaged over the ranks, rank 0 writes the outputs; a rank that\n"
      "fails or a collective stuck for distributed.timeout_s ends the whole job.\n\n"
      "keys:\n" + config::config_help_text();
  c.run = [](const std::vector<std::string>& argv) -> int {
    Args args(argv, {}, {}, {"--set"});
    if (args.positionals().size() != 1) {
      throw UsageError("train takes exactly one CONFIG.toml, got " + std::to_string(args.positionals().size()) +
                       " arguments");
    }
    dist::MpiRuntime mpi(nullptr, nullptr);
    try {
      // Rank 0 reads the config once; every rank parses the same text, so a bad config is the
      // same error everywhere.
      const std::string path = args.positionals()[0];
      const config::Config cfg =
          config::load_config_text(dist::read_file_collective(mpi.world(), path), path, args.repeated("--set"));
      const Logger log(std::cerr, parse_log_level(cfg.get_string("logging.level")), mpi.rank(), mpi.world_size());
      // auto: NCCL when it is built in and training runs on a GPU, MPI otherwise.
      std::string backend = cfg.get_string("distributed.backend");
      const std::string device = cfg.get_string("train.device");
      const bool cuda = device == "cuda" || (device == "auto" && torch::cuda::is_available());
      if (backend == "auto") backend = dist::nccl_backend_built() && cuda ? "nccl" : "mpi";
      if (backend == "nccl" && !cuda) {
        throw UsageError("distributed.backend = \"nccl\" needs training on CUDA (train.device); use \"mpi\" on CPU");
      }
      const double timeout = cfg.get_float("distributed.timeout_s");
      const int gpu = cuda ? mpi.local_rank() % std::max<int>(1, static_cast<int>(torch::cuda::device_count())) : 0;
      auto comm = backend == "nccl" ? dist::make_nccl_collectives(mpi.world(), gpu, timeout)
                                    : dist::make_mpi_collectives(mpi.world(), timeout);
      const train::TrainSummary summary = train::run_training(cfg, log, *comm, mpi.local_rank());
      return summary.preempted ? kExitPreempted : kExitOk;
    } catch (const std::exception& e) {
      if (mpi.world_size() == 1) throw;  // reported by run_cli with its exit code
      // One rank failing ends the whole job: the others would wait in the next collective.
      const auto* err = dynamic_cast<const Error*>(&e);
      std::cerr << "error: [rank " << mpi.rank() << "/" << mpi.world_size() << "] " << e.what() << "\n";
      if (err && !err->hint().empty()) std::cerr << "hint: " << err->hint() << "\n";
      std::cerr.flush();
      MPI_Abort(mpi.world(), dynamic_cast<const UsageError*>(&e) ? kExitUsage : kExitFailure);
      return static_cast<int>(kExitFailure);
    }
  };
  return c;
}

}  // namespace sdxl::cli
