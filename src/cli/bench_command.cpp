// `bench`: the speed of a training config's LoRA steps (or, with --generate, of its validation
// images) on this machine, per rank and in total; see docs/benchmarks.md.
#include "sdxl_dreambooth/cli/args.h"
#include "sdxl_dreambooth/cli/command.h"
#include "sdxl_dreambooth/cli/rank_job.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/perf/generation_benchmark.h"
#include "sdxl_dreambooth/perf/training_benchmark.h"
#include "sdxl_dreambooth/util/json_text.h"
#include "sdxl_dreambooth/util/strings.h"

#include <filesystem>
#include <iostream>

namespace sdxl::cli {

Command make_bench_command() {
  Command c;
  c.name = "bench";
  c.summary = "Time a config's training steps (or --generate: its validation images) per rank and in total";
  c.help =
      "usage: sdxl-dreambooth bench CONFIG.toml [--set section.key=value]... [--steps 10] [--warmup 2]\n"
      "                             [--generate] [--architecture DIR] [--peak-tflops T] [--no-phase-sync]\n"
      "                             [--profile] [--json]\n"
      "       mpirun -np N sdxl-dreambooth bench CONFIG.toml ...\n\n"
      "Runs --warmup and then --steps LoRA training steps of CONFIG through the training code (the\n"
      "config's model, device, precision, batch, accumulation, LoRA, gradient checkpointing and\n"
      "collectives) on synthetic batches of its shapes: no image is read or encoded, nothing is\n"
      "written. Prints the mean per-step time of data, forward, backward, all-reduce and optimizer,\n"
      "images/s per rank and in total, peak memory (RSS on the CPU, CUDA max allocated on a GPU;\n"
      "max over ranks), the UNet's analytic model FLOPs per image and the achieved rate, and MFU on\n"
      "a GPU of known peak.\n"
      "--generate   time text-to-image instead, with the config's validation settings (first\n"
      "             prompt, steps, guidance, scheduler, resolution, batch size): --warmup images,\n"
      "             then --steps images per rank (defaults 1 and 2)\n"
      "--architecture DIR  build the networks from DIR's configs (unet/config.json or\n"
      "             unet.config.json, vae…) with random weights instead of loading model.pretrained's\n"
      "             weights (tokenizers and scheduler still come from model.pretrained)\n"
      "--peak-tflops T  the device's peak TFLOP/s for MFU (default: a table of NVIDIA GPUs)\n"
      "--no-phase-sync  do not wait for the GPU between phases: it runs ahead of the host as in\n"
      "             `train`, and images/s is the loop's; the phase times are then only the host's\n"
      "--profile    profile the measured steps with LibTorch's profiler and list the costliest\n"
      "             GPU kernels (on the CPU: top-level operators) by total time, and count the\n"
      "             operator events the host dispatched per step, with the names it dispatched\n"
      "             most; the profiler adds host overhead to the step times of such a run\n"
      "--json       one JSON object on standard output instead of the table\n"
      "Progress goes to standard error.\n";
  c.run = [](const std::vector<std::string>& argv) -> int {
    Args args(argv, {"--generate", "--json", "--no-phase-sync", "--profile"}, {"--steps", "--warmup", "--architecture", "--peak-tflops"}, {"--set"});
    if (args.positionals().size() != 1) {
      throw UsageError("bench takes exactly one CONFIG.toml, got " + std::to_string(args.positionals().size()) +
                       " arguments");
    }
    const bool generate = args.flag("--generate");
    perf::BenchmarkOptions o;
    o.steps = args.int_option("--steps").value_or(generate ? 2 : 10);
    o.warmup = args.int_option("--warmup").value_or(generate ? 1 : 2);
    if (o.steps < 1) throw UsageError("--steps: expected at least 1, got " + std::to_string(o.steps));
    if (o.warmup < 0) throw UsageError("--warmup: expected 0 or more, got " + std::to_string(o.warmup));
    o.architecture = args.option("--architecture");
    if (o.architecture) {
      std::error_code ec;
      if (!std::filesystem::is_directory(*o.architecture, ec)) {
        throw UsageError("--architecture: " + util::quoted(*o.architecture) + " is not a folder");
      }
    }
    o.peak_tflops = args.float_option("--peak-tflops");
    if (o.peak_tflops && !(*o.peak_tflops > 0)) {
      throw UsageError("--peak-tflops: expected a positive number, got " + util::format_number(*o.peak_tflops));
    }
    o.phase_sync = !args.flag("--no-phase-sync");
    if (generate && !o.phase_sync) throw UsageError("--no-phase-sync applies to training steps, not --generate");
    o.profile = args.flag("--profile");
    if (generate && o.profile) throw UsageError("--profile applies to training steps, not --generate");
    const bool json = args.flag("--json");
    return run_rank_job(args.positionals()[0], args.repeated("--set"), [&](RankJob& job) {
      std::string text;
      if (generate) {
        const auto b = perf::run_generation_benchmark(job.config, o, job.log, job.comm, job.mpi.local_rank());
        text = json ? util::json_text(perf::to_json(b), 2) + "\n" : perf::describe(b);
      } else {
        const auto b = perf::run_training_benchmark(job.config, o, job.log, job.comm, job.mpi.local_rank());
        text = json ? util::json_text(perf::to_json(b), 2) + "\n" : perf::describe(b);
      }
      if (job.mpi.rank() == 0) std::cout << text << std::flush;
      return static_cast<int>(kExitOk);
    });
  };
  return c;
}

}  // namespace sdxl::cli
