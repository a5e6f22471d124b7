// `bench` (training mode): N LoRA steps after a warm-up through the step code of `train`
// (train/train_step.h), on synthetic batches of the config's shapes — random latents, noise,
// timesteps and text embeddings, so no image is read or encoded — timing data, forward,
// backward, all-reduce and optimizer per step.
#pragma once

#include "sdxl_dreambooth/perf/benchmark_report.h"
#include "sdxl_dreambooth/perf/op_profile.h"
#include "sdxl_dreambooth/train/train_step.h"
#include "sdxl_dreambooth/util/logger.h"

#include <optional>

namespace sdxl::perf {

struct TrainingBenchmark {
  BenchmarkSetup setup;
  std::int64_t batch_rows = 0;  // UNet rows per micro-batch and rank (x2 with prior preservation)
  std::int64_t grad_accum = 1;
  bool gradient_checkpointing = false;
  bool channels_last = false;
  bool fused_kernels = false;  // train.fused_kernels (nn/geglu_product's CUDA kernels)
  bool phase_sync = true;  // BenchmarkOptions::phase_sync
  bool fuse_projections = false;
  bool cuda_graphs = false;  // train.cuda_graphs (on CUDA): forward and backward timed as one
  std::int64_t lora_rank = 0, lora_parameters = 0;
  std::int64_t allreduce_bytes = 0;  // per step and rank (one rank issues it too)
  train::StepTimes per_step;         // mean over the measured steps and the ranks
  double slowest_rank_step_s = 0;    // the slowest rank's mean step
  double host_page_faults_per_step = 0;  // minor page faults of the process per measured step, max over ranks
  BenchmarkThroughput throughput;
  BenchmarkMemory memory;
  std::optional<OpProfile> profile;  // BenchmarkOptions::profile, this rank's
};

// Every rank of `comm` calls it with the same config and options; all get the result.
// lora.train_text_encoder is refused (the text encoders are not run on synthetic batches).
TrainingBenchmark run_training_benchmark(const config::RunConfig& config, const BenchmarkOptions& options,
                                         const Logger& log, dist::Collectives& comm, int local_rank);

nlohmann::json to_json(const TrainingBenchmark& b);
std::string describe(const TrainingBenchmark& b);

}  // namespace sdxl::perf
