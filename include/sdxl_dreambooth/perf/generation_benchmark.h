// `bench --generate`: text-to-image through the code of `generate` and validation (both text
// encoders, classifier-free guidance, the sampler, the VAE decode) with the config's
// validation settings; warm-up images first, then N measured images per rank.
#pragma once

#include "sdxl_dreambooth/perf/benchmark_report.h"
#include "sdxl_dreambooth/util/logger.h"

namespace sdxl::perf {

struct GenerationBenchmark {
  BenchmarkSetup setup;
  std::int64_t sampling_steps = 0;
  double guidance_scale = 0;
  std::string scheduler;
  std::int64_t batch_size = 1;     // images per UNet call
  double seconds_per_image = 0;    // mean over ranks
  double seconds_per_step = 0;     // per image and denoising step
  BenchmarkThroughput throughput;  // model FLOPs: the UNet passes (x2 with guidance), not the VAE
  BenchmarkMemory memory;
};

GenerationBenchmark run_generation_benchmark(const config::RunConfig& config, const BenchmarkOptions& options,
                                             const Logger& log, dist::Collectives& comm, int local_rank);

nlohmann::json to_json(const GenerationBenchmark& b);
std::string describe(const GenerationBenchmark& b);

}  // namespace sdxl::perf
