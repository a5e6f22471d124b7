#include "sdxl_dreambooth/perf/training_benchmark.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/model/component_loader.h"
#include "sdxl_dreambooth/model/model_location.h"
#include "sdxl_dreambooth/model/scheduler_config.h"
#include "sdxl_dreambooth/model/unet_flops.h"
#include "sdxl_dreambooth/model/vae_config.h"
#include "sdxl_dreambooth/nn/lora_network.h"
#include "sdxl_dreambooth/pipeline/random_weights_pipeline.h"
#include "sdxl_dreambooth/sampling/noise_schedule.h"
#include "sdxl_dreambooth/train/training_setup.h"
#include "sdxl_dreambooth/util/memory_usage.h"
#include "sdxl_dreambooth/util/strings.h"
#include "sdxl_dreambooth/util/to_device.h"

#include <chrono>
#include <cstdio>

namespace sdxl::perf {
namespace {

using Clock = std::chrono::steady_clock;

// Fixed text conditioning of the UNet's shapes; fresh latents, noise and timesteps per micro-batch.
struct SyntheticData {
  torch::Tensor prompt_embeds, text_embeds, time_ids;
  std::int64_t rows = 1, channels = 4, latent_size = 8, num_train_timesteps = 1000;
  torch::Device device = torch::kCPU;

  train::DiffusionBatch batch(at::Generator& gen) const {
    const auto f32 = torch::TensorOptions().dtype(torch::kFloat);
    train::DiffusionBatch b;
    b.latents = util::to_device_async(at::randn({rows, channels, latent_size, latent_size}, gen, f32), device);
    b.noise = util::to_device_async(at::randn({rows, channels, latent_size, latent_size}, gen, f32), device);
    b.timesteps = util::to_device_async(
        at::randint(0, num_train_timesteps, {rows}, gen, torch::TensorOptions().dtype(torch::kLong)), device);
    b.prompt_embeds = prompt_embeds;
    b.text_embeds = text_embeds;
    b.time_ids = time_ids;
    return b;
  }
};

// The UNet (loaded as `train` loads it, or random weights from an architecture); the
// scheduler and the VAE's downsampling factor from their configs.
struct BenchUnet {
  nn::UNet2DConditionModel unet{nullptr};
  model::SchedulerConfig scheduler_config;
  std::int64_t vae_factor = 8;
};

BenchUnet load_bench_unet(const config::ModelConfig& model, const BenchmarkOptions& o, torch::Dtype dtype,
                          const torch::Device& device) {
  const model::PipelineFolder folder = model::open_pipeline(model.pretrained, model.revision);
  BenchUnet u;
  std::filesystem::path vae_config = folder.component("vae") / "config.json";
  if (o.architecture) {
    u.unet = pipeline::random_unet(*o.architecture, dtype, device);
    if (auto p = pipeline::architecture_config(*o.architecture, "vae")) vae_config = *p;
  } else {
    model::ComponentLoadOptions lo;
    lo.variant = model.variant;
    lo.dtype = dtype;
    lo.device = device;
    u.unet = model::load_unet(folder.component("unet"), lo);
  }
  u.scheduler_config = model::SchedulerConfig::load(folder.component("scheduler") / "scheduler_config.json");
  u.vae_factor = std::int64_t{1} << (model::VaeConfig::load(vae_config).block_out_channels.size() - 1);
  return u;
}

SyntheticData synthetic_data(const model::UNetConfig& uc, std::int64_t rows, std::int64_t resolution,
                             std::int64_t vae_factor, std::int64_t num_train_timesteps, torch::Dtype dtype,
                             const torch::Device& device) {
  SyntheticData data;
  data.rows = rows;
  data.channels = uc.in_channels;
  data.latent_size = resolution / vae_factor;
  data.num_train_timesteps = num_train_timesteps;
  data.device = device;
  const auto opts = torch::TensorOptions().dtype(dtype).device(device);
  auto embed_gen = at::detail::createCPUGenerator(7);
  data.prompt_embeds = at::randn({rows, 77, uc.cross_attention_dim.at(0)}, embed_gen).to(opts);
  data.text_embeds =
      at::randn({rows, uc.projection_class_embeddings_input_dim - 6 * uc.addition_time_embed_dim}, embed_gen).to(opts);
  const double r = static_cast<double>(resolution);
  data.time_ids = torch::tensor({r, r, 0.0, 0.0, r, r}).repeat({rows, 1}).to(opts);
  return data;
}

// This rank's measured steps: phase times summed, wall time, page faults, and the results
// still to read back (without phase syncs).
struct MeasuredSteps {
  train::StepTimes times;
  double elapsed_s = 0;
  double page_faults = 0;
  std::vector<train::StepResult> unread;
  std::optional<OpProfile> profile;
};

void log_step(const Logger& log, bool warm_up, std::int64_t n, const train::StepTimes& t, const std::string& loss) {
  log.info(std::string(warm_up ? "warm-up " : "step ") + std::to_string(n) + ": data " +
           format_value("%.4f", t.data_s) + " s, forward " + format_value("%.4f", t.forward_s) + " s, backward " +
           format_value("%.4f", t.backward_s) + " s, all-reduce " + format_value("%.4f", t.allreduce_s) +
           " s, optimizer " + format_value("%.4f", t.optimizer_s) + " s" + loss);
}

MeasuredSteps run_steps(const train::TrainStepParts& parts, const SyntheticData& data, double lr,
                        const BenchmarkOptions& o, const torch::Device& device, const Logger& log) {
  MeasuredSteps m;
  std::optional<OpProfiler> profiler;
  Clock::time_point start = Clock::now();
  std::uint64_t faults_at_start = 0;
  for (std::int64_t i = 0; i < o.warmup + o.steps; ++i) {
    if (i == o.warmup) {
      if (device.is_cuda()) torch::cuda::synchronize();
      if (o.profile) profiler.emplace(device.is_cuda());
      start = Clock::now();
      faults_at_start = util::minor_page_faults();
    }
    auto gen = at::detail::createCPUGenerator(static_cast<std::uint64_t>(1000 + i));
    train::StepTimes t;
    const train::StepResult res = train::run_train_step(
        parts, i, lr, [&](std::int64_t) { return data.batch(gen); }, t);
    const bool warm_up = i < o.warmup;
    if (!warm_up) {
      m.times.data_s += t.data_s;
      m.times.forward_s += t.forward_s;
      m.times.backward_s += t.backward_s;
      m.times.allreduce_s += t.allreduce_s;
      m.times.optimizer_s += t.optimizer_s;
    }
    std::string loss;
    if (o.phase_sync) {
      const train::StepValues v = train::read_step_values({res}).front();
      train::check_step_finite(i + 1, res, v);
      loss = ", loss " + format_value("%.4f", v.loss);
    } else {
      m.unread.push_back(res);
    }
    log_step(log, warm_up, warm_up ? i + 1 : i - o.warmup + 1, t, loss);
  }
  if (device.is_cuda()) torch::cuda::synchronize();  // the steps still queued belong to the measurement
  m.elapsed_s = seconds_since(start);
  m.page_faults = static_cast<double>(util::minor_page_faults() - faults_at_start);
  if (profiler) {
    m.profile = profiler->finish(o.profile_top);
    m.profile->steps = o.steps;
  }
  return m;
}

// Means over the ranks of each phase, the slowest rank's step, and every step's result read
// back and checked.
void summarise(const MeasuredSteps& m, dist::Collectives& comm, const BenchmarkOptions& o, TrainingBenchmark& b) {
  const double steps = static_cast<double>(o.steps);
  dist::HostCollectives& host = comm.host();
  const auto mean = [&](double seconds, const char* what) {
    return host.all_reduce_sum(seconds, what) / (steps * comm.world_size());
  };
  b.per_step = {mean(m.times.data_s, "benchmark data time"), mean(m.times.forward_s, "benchmark forward time"),
                mean(m.times.backward_s, "benchmark backward time"),
                mean(m.times.allreduce_s, "benchmark all-reduce time"),
                mean(m.times.optimizer_s, "benchmark optimizer time")};
  b.slowest_rank_step_s = host.all_reduce_max(m.elapsed_s / steps, "benchmark step time");
  b.host_page_faults_per_step = host.all_reduce_max(m.page_faults / steps, "benchmark page faults");
  const std::vector<train::StepValues> values = train::read_step_values(m.unread);
  for (std::size_t k = 0; k < values.size(); ++k) train::check_step_finite(std::int64_t(k) + 1, m.unread[k], values[k]);
}

}  // namespace

TrainingBenchmark run_training_benchmark(const config::RunConfig& cfg, const BenchmarkOptions& o, const Logger& log,
                                         dist::Collectives& comm, int local_rank) {
  for (const auto& [on, key] : {std::pair<bool, const char*>{cfg.lora.train_text_encoder, "lora.train_text_encoder"},
                                 {cfg.lora.train_text_encoder_ti, "lora.train_text_encoder_ti"}}) {
    if (!on) continue;
    throw UsageError(std::string("bench times UNet LoRA steps on synthetic text embeddings; ") + key +
                         " = true is not supported there",
                     std::string("add --set ") + key + "=false");
  }
  const torch::Device device = train::training_device(cfg.train, local_rank);
  train::configure_cuda_math(cfg.train);
  const torch::Dtype dtype = train::training_dtype(cfg.train, device);
  TrainingBenchmark b;
  b.cuda_graphs = train::cuda_graphs(cfg.train, cfg.lora, device);
  b.setup = benchmark_setup(cfg.model, o, "train", device, dtype, comm);
  b.setup.resolution = cfg.data.resolution;

  const auto load_start = Clock::now();
  const BenchUnet u = load_bench_unet(cfg.model, o, dtype, device);
  nn::UNet2DConditionModel unet = u.unet;
  const sampling::NoiseSchedule schedule = sampling::NoiseSchedule(u.scheduler_config).to(device);
  log.info("bench: UNet ready in " + format_value("%.1f", seconds_since(load_start)) + " s (" + b.setup.model + ")");

  const nn::LoraSpec spec = train::lora_spec(cfg.lora);
  auto init_gen = at::detail::createCPUGenerator(3);
  const nn::LoraNetwork lora = nn::LoraNetwork::inject(*unet, spec, init_gen, "UNet");
  b.gradient_checkpointing = cfg.train.gradient_checkpointing;
  unet->set_gradient_checkpointing(b.gradient_checkpointing);
  b.channels_last = cfg.train.channels_last;
  unet->set_channels_last(b.channels_last);
  b.fused_kernels = train::fused_kernels(cfg.train, device);
  unet->set_fused_kernels(b.fused_kernels);
  b.fuse_projections = train::fuse_projections(cfg.train, device);
  if (b.fuse_projections) unet->fuse_projections();
  const auto optimizer = train::make_optimizer(cfg.optimizer, {{lora.parameters(), 1.0, cfg.optimizer.weight_decay}});
  train::DynamicLossScaler scaler(cfg.train.mixed_precision == "fp16");
  b.lora_rank = spec.rank;
  b.lora_parameters = lora.num_parameters();
  b.grad_accum = cfg.train.grad_accum;
  b.batch_rows = cfg.train.batch_size * (cfg.prior.enabled ? 2 : 1);
  b.allreduce_bytes = (b.lora_parameters + 1) * 4;  // + the loss; issued at every world size
  b.phase_sync = o.phase_sync;
  const SyntheticData data = synthetic_data(unet->config(), b.batch_rows, b.setup.resolution, u.vae_factor,
                                            schedule.num_train_timesteps(), dtype, device);

  train::TrainStepParts parts;
  parts.unet = unet;
  parts.schedule = &schedule;
  parts.loss = train::loss_options(cfg.train, cfg.prior, u.scheduler_config.prediction_type);
  parts.unet_lora = &lora;
  parts.params = lora.parameters();
  parts.optimizer = optimizer.get();
  parts.scaler = &scaler;
  parts.comm = &comm;
  parts.grad_accum = b.grad_accum;
  parts.max_grad_norm = cfg.train.max_grad_norm;
  parts.synchronize_phases = o.phase_sync;
  std::optional<train::StepGraph> graph;
  if (b.cuda_graphs) {
    parts.graph = &graph.emplace(train::StepGraph::Mode::kCuda);
    if (o.warmup == 0) {
      log.warn("bench: with train.cuda_graphs the first step records the graph (an extra pass and a device "
               "sync); --warmup 0 counts it among the measured steps");
    }
  }

  log.info("bench: " + std::to_string(o.warmup) + " warm-up + " + std::to_string(o.steps) + " measured steps, " +
           std::to_string(b.batch_rows) + " UNet rows x " + std::to_string(b.grad_accum) + " accumulation per rank, " +
           std::to_string(b.setup.resolution) + " px, LoRA rank " + std::to_string(spec.rank) + " (" +
           std::to_string(b.lora_parameters) + " parameters)");
  reset_peak_memory(device);
  MeasuredSteps m = run_steps(parts, data, cfg.train.learning_rate, o, device, log);
  b.profile = std::move(m.profile);
  summarise(m, comm, o, b);
  const model::UNetFlops flops = model::unet_flops(unet->config(), b.setup.resolution, b.setup.resolution);
  const double images = static_cast<double>(o.steps) * static_cast<double>(b.batch_rows * b.grad_accum);
  b.throughput = throughput(images / m.elapsed_s, flops.lora_training_step, b.setup, comm.host(), o.peak_tflops);
  b.memory = peak_memory(device, comm.host());
  return b;
}

nlohmann::json to_json(const TrainingBenchmark& b) {
  nlohmann::json j = to_json(b.setup);
  j["batch_rows"] = b.batch_rows;
  j["grad_accum"] = b.grad_accum;
  j["gradient_checkpointing"] = b.gradient_checkpointing;
  j["channels_last"] = b.channels_last;
  j["phase_sync"] = b.phase_sync;
  j["fuse_projections"] = b.fuse_projections;
  j["cuda_graphs"] = b.cuda_graphs;
  j["fused_kernels"] = b.fused_kernels;
  j["lora_rank"] = b.lora_rank;
  j["lora_parameters"] = b.lora_parameters;
  j["allreduce_bytes"] = b.allreduce_bytes;
  j["per_step_s"] = {{"data", b.per_step.data_s},           {"forward", b.per_step.forward_s},
                     {"backward", b.per_step.backward_s},   {"allreduce", b.per_step.allreduce_s},
                     {"optimizer", b.per_step.optimizer_s}, {"total", b.per_step.total()}};
  j["slowest_rank_step_s"] = b.slowest_rank_step_s;
  j["host_page_faults_per_step"] = b.host_page_faults_per_step;
  j.update(to_json(b.throughput, b.memory));
  if (b.profile) j["profile"] = to_json(*b.profile);
  return j;
}

std::string describe(const TrainingBenchmark& b) {
  const train::StepTimes& t = b.per_step;
  const double total = std::max(t.total(), 1e-12);
  auto phase = [&](const char* name, double s) {
    return std::string(name) + " " + format_value("%.4f", s) + " s (" + format_value("%.1f", 100 * s / total) + " %)";
  };
  std::string out = "sdxl-dreambooth bench: LoRA training steps\n" + describe(b.setup);
  out += "step       " + std::to_string(b.batch_rows) + " UNet rows x " + std::to_string(b.grad_accum) +
         " accumulation per rank at " + std::to_string(b.setup.resolution) + " px, LoRA rank " +
         std::to_string(b.lora_rank) + " (" + std::to_string(b.lora_parameters) + " parameters), checkpointing " +
         (b.gradient_checkpointing ? "on" : "off") + (b.channels_last ? ", channels-last" : "") +
         (b.fuse_projections ? ", fused projections" : "") + (b.fused_kernels ? ", fused GEGLU kernels" : "") +
         (b.cuda_graphs ? ", CUDA graph (forward is forward + backward)" : "") +
         (b.phase_sync ? "" : ", no phase syncs") + "; " + std::to_string(b.setup.steps) + " step(s) after " +
         std::to_string(b.setup.warmup) + " warm-up\n";
  // Without phase syncs the phases are where the host spent its time (queueing work, or blocked
  // on a full launch queue); images/s comes from the wall time either way.
  out += std::string(b.phase_sync ? "per step   " : "host queue ") + phase("data", t.data_s) + ", " + phase("forward", t.forward_s) + ", " +
         phase("backward", t.backward_s) + ", " + phase("all-reduce", t.allreduce_s) + ", " +
         phase("optimizer", t.optimizer_s) + "; total " + format_value("%.4f", t.total()) + " s (slowest rank " +
         format_value("%.4f", b.slowest_rank_step_s) + " s)\n";
  if (b.allreduce_bytes > 0) {
    out += "all-reduce " + util::format_bytes(static_cast<double>(b.allreduce_bytes)) + " per step and rank\n";
  }
  out += describe(b.throughput, b.memory);
  out += "faults     " + format_value("%.0f", b.host_page_faults_per_step) +
         " host page faults per step (memory mapped in on first touch; max over ranks)\n";
  if (b.profile) out += describe(*b.profile);
  return out;
}

}  // namespace sdxl::perf
