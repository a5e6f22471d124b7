#include "sdxl_dreambooth/perf/generation_benchmark.h"

#include "sdxl_dreambooth/config/data_subsets.h"
#include "sdxl_dreambooth/model/unet_flops.h"
#include "sdxl_dreambooth/pipeline/random_weights_pipeline.h"
#include "sdxl_dreambooth/pipeline/sdxl_pipeline.h"
#include "sdxl_dreambooth/train/training_setup.h"

#include <chrono>
#include <cstdio>

namespace sdxl::perf {
namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

GenerationBenchmark run_generation_benchmark(const config::RunConfig& cfg, const BenchmarkOptions& o, const Logger& log,
                                             dist::Collectives& comm, int local_rank) {
  const torch::Device device = train::training_device(cfg.train, local_rank);
  train::configure_cuda_math(cfg.train);
  const torch::Dtype dtype = train::training_dtype(cfg.train, device);
  GenerationBenchmark b;
  b.setup = benchmark_setup(cfg.model, o, "generate", device, dtype, comm);

  // What validation draws: the first validation prompt (else the instance prompt).
  pipeline::GenerationRequest r;
  const auto prompts = cfg.validation.prompts;
  r.prompts = {prompts.empty() ? config::instance_prompts(cfg.data).front() : prompts.front()};
  r.negative_prompt = cfg.validation.negative_prompt;
  r.steps = cfg.validation.steps;
  r.guidance_scale = cfg.validation.guidance_scale;
  r.width = r.height = cfg.validation.resolution.value_or(cfg.data.resolution);
  r.scheduler = cfg.validation.scheduler;
  r.batch_size = cfg.validation.batch_size;
  const std::int64_t per_rank = o.warmup + o.steps;
  r.images_per_prompt = per_rank * comm.world_size();
  pipeline::validate(r);
  b.setup.resolution = r.width;
  b.sampling_steps = r.steps;
  b.guidance_scale = r.guidance_scale;
  b.scheduler = r.scheduler;
  b.batch_size = r.batch_size;

  const auto load_start = Clock::now();
  const pipeline::PipelineOptions po = train::base_model_options(cfg.model, dtype, device);  // as in training
  pipeline::SdxlPipeline pipe =
      o.architecture ? pipeline::random_weights_pipeline(po, *o.architecture) : pipeline::SdxlPipeline::load(po);
  log.info("bench: pipeline ready in " + format_value("%.1f", seconds_since(load_start)) + " s (" + b.setup.model +
           ")");

  // This rank's images: a block of its own, so no two ranks draw the same one.
  std::vector<std::pair<std::size_t, std::int64_t>> warm, measured;
  for (std::int64_t k = 0; k < per_rank; ++k) {
    (k < o.warmup ? warm : measured).emplace_back(0, comm.rank() * per_rank + k);
  }
  reset_peak_memory(device);
  if (!warm.empty()) pipe.generate(r, warm);
  if (device.is_cuda()) torch::cuda::synchronize();
  const auto start = Clock::now();
  pipe.generate(r, measured, [&](std::int64_t done, std::int64_t total) {
    if (done == total || done % r.steps == 0)
      log.info("bench: " + std::to_string(done) + "/" + std::to_string(total) + " image steps");
  });
  if (device.is_cuda()) torch::cuda::synchronize();
  const double elapsed = seconds_since(start);
  const double mine = elapsed / static_cast<double>(o.steps);
  b.seconds_per_image = comm.host().all_reduce_max(mine, "benchmark seconds per image");  // the slowest rank's
  b.seconds_per_step = b.seconds_per_image / static_cast<double>(r.steps);
  const double passes = r.guidance_scale > 1.0 ? 2.0 : 1.0;
  const double flops =
      static_cast<double>(r.steps) * passes * model::unet_flops(pipe.unet->config(), r.height, r.width).forward;
  b.throughput = throughput(1.0 / mine, flops, b.setup, comm.host(), o.peak_tflops);
  b.memory = peak_memory(device, comm.host());
  return b;
}

nlohmann::json to_json(const GenerationBenchmark& b) {
  nlohmann::json j = to_json(b.setup);
  j["sampling_steps"] = b.sampling_steps;
  j["guidance_scale"] = b.guidance_scale;
  j["scheduler"] = b.scheduler;
  j["batch_size"] = b.batch_size;
  j["seconds_per_image"] = b.seconds_per_image;
  j["seconds_per_step"] = b.seconds_per_step;
  j.update(to_json(b.throughput, b.memory));
  return j;
}

std::string describe(const GenerationBenchmark& b) {
  std::string out = "sdxl-dreambooth bench --generate: text-to-image\n" + describe(b.setup);
  out += "images     " + std::to_string(b.setup.resolution) + "x" + std::to_string(b.setup.resolution) + ", " +
         std::to_string(b.sampling_steps) + " steps " + b.scheduler + ", guidance " +
         format_value("%g", b.guidance_scale) + ", " + std::to_string(b.batch_size) + " image(s) per UNet call; " +
         std::to_string(b.setup.steps) + " per rank after " + std::to_string(b.setup.warmup) + " warm-up\n";
  out += "time       " + format_value("%.4g", b.seconds_per_image) + " s per image (slowest rank), " +
         format_value("%.4g", b.seconds_per_step) + " s per denoising step\n";
  return out + describe(b.throughput, b.memory);
}

}  // namespace sdxl::perf
