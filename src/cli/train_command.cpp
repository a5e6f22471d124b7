// `train`: a DreamBooth LoRA training run from a TOML config, on one process or on every rank
// of an MPI job (mpirun / srun --mpi=pmix).
#include "sdxl_dreambooth/cli/args.h"
#include "sdxl_dreambooth/cli/command.h"
#include "sdxl_dreambooth/cli/rank_job.h"
#include "sdxl_dreambooth/train/preemption.h"
#include "sdxl_dreambooth/config/config.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/train/trainer.h"

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
    // First: a SIGTERM or SIGUSR1 from Slurm during start-up is a preemption request too.
    const train::PreemptionSignals signals;
    return run_rank_job(args.positionals()[0], args.repeated("--set"), [&signals](RankJob& job) {
      const train::TrainSummary summary =
          train::run_training(job.config, job.log, job.comm, job.mpi.local_rank(), signals);
      return summary.preempted ? kExitPreempted : kExitOk;
    });
  };
  return c;
}

}  // namespace sdxl::cli
