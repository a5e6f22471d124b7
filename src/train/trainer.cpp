#include "sdxl_dreambooth/train/trainer.h"

#include "sdxl_dreambooth/build_features.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/io/folder_lock.h"
#include "sdxl_dreambooth/model/unet_flops.h"
#include "sdxl_dreambooth/pipeline/sdxl_pipeline.h"
#include "sdxl_dreambooth/train/class_images.h"
#include "sdxl_dreambooth/train/checkpoint_writer.h"
#include "sdxl_dreambooth/train/data_order.h"
#include "sdxl_dreambooth/train/fault_injection.h"
#include "sdxl_dreambooth/train/latent_cache.h"
#include "sdxl_dreambooth/train/lora_outputs.h"
#include "sdxl_dreambooth/train/memory_preflight.h"
#include "sdxl_dreambooth/train/preflight.h"
#include "sdxl_dreambooth/train/run_settings.h"
#include "sdxl_dreambooth/train/start_point.h"
#include "sdxl_dreambooth/train/step_plan.h"
#include "sdxl_dreambooth/train/trained_adapters.h"
#include "sdxl_dreambooth/train/training_data.h"
#include "sdxl_dreambooth/train/training_loop.h"
#include "sdxl_dreambooth/train/training_setup.h"
#include "sdxl_dreambooth/util/host_name.h"
#include "sdxl_dreambooth/util/memory_usage.h"
#include "sdxl_dreambooth/util/stopwatch.h"
#include "sdxl_dreambooth/util/strings.h"

#include <algorithm>
#include <cstring>
#include <ctime>
#include <optional>
#include <filesystem>
#include <fstream>

namespace fs = std::filesystem;

namespace sdxl::train {
namespace {

// Each rank logs where it landed (host, local rank, device), the first thing to check when a
// cluster job misbehaves.
void log_placement(const RunSettings& s, const Logger& log, dist::Collectives& comm, int local_rank) {
  log.info_all_ranks("rank " + std::to_string(comm.rank()) + " of " + std::to_string(comm.world_size()) + " on " +
                     util::host_name() + ", local rank " + std::to_string(local_rank) + ", device " +
                     s.device.str());
  log.info(std::to_string(comm.world_size()) + " rank(s) (" + comm.backend() + " collectives), seed " +
           std::to_string(s.seed) + ", device " + s.device.str() + ", precision " +
           (s.mixed_precision == "no" ? std::string("fp32") : s.mixed_precision));
}

// OUTPUT/train_config.toml, the effective config (rank 0), once nothing can fail as a
// configuration error any more.
void write_run_config(const config::RunConfig& cfg, const RunSettings& s, dist::Collectives& comm) {
  if (comm.rank() != 0) return;
  const fs::path path = s.output / "train_config.toml";
  std::ofstream toml(path);
  toml << config::to_toml(cfg);
  if (!toml) throw Error("cannot write " + path.string());
}

// Rank 0 holds output.dir, and checkpoint.dir when it lies outside, for the whole run: a second
// run on the same folders fails at once instead of overwriting this one's files.
class RunLocks {
 public:
  RunLocks(const RunSettings& s, bool separate_checkpoint_dir) : output_(s.output, "output.dir") {
    if (separate_checkpoint_dir && !inside(s.checkpoint_dir, s.output)) {
      try {
        checkpoints_.emplace(s.checkpoint_dir, "checkpoint.dir");
      } catch (const UsageError&) {
        output_.abandon();
        throw;
      }
    }
  }
  // A configuration error after locking: leave no lock file or folder behind.
  void abandon() noexcept {
    if (checkpoints_) checkpoints_->abandon();
    output_.abandon();
  }

 private:
  static bool inside(const fs::path& path, const fs::path& folder) {
    std::error_code ec;
    const fs::path p = fs::weakly_canonical(path, ec), f = fs::weakly_canonical(folder, ec);
    const auto rel = p.lexically_relative(f);
    return !rel.empty() && *rel.begin() != "..";
  }

  io::FolderLock output_;
  std::optional<io::FolderLock> checkpoints_;
};

// Before the first step a preemption request (SIGTERM/SIGUSR1 on any rank) ends the run at the
// next phase boundary: nothing is trained yet, so nothing is checkpointed.
void stop_if_preempted(const PreemptionSignals& signals, dist::HostCollectives& comm, const char* phase) {
  if (comm.all_reduce_max(signals.requested() ? 1.0 : 0.0, phase) > 0) throw PreemptedBeforeTraining{};
}

// data.cache_dir's set key, from rank 0's fingerprint of the base model (empty without a cache).
std::string cache_key(const config::RunConfig& cfg, const RunSettings& s, const StartPoint& start,
                      const pipeline::SdxlPipeline& pipe, dist::HostCollectives& comm) {
  if (!cfg.data.cache_dir) return {};
  std::string key;
  if (comm.rank() == 0) {
    key = latent_cache_key(cfg, s, start.fingerprint, pipe.vae->decoder->conv_in->weight.scalar_type());
  }
  comm.broadcast(key, 0, "broadcast of the latent cache key");
  return key;
}

pipeline::SdxlPipeline load_base_model(const config::ModelConfig& model, const RunSettings& s, const Logger& log) {
  const util::Stopwatch watch;
  auto pipe = pipeline::SdxlPipeline::load(base_model_options(model, s.dtype, s.device));
  log.info("loaded " + model.pretrained + " in " + util::format_with("%.1f", watch.seconds()) + " s");
  return pipe;
}

// How the UNet runs its forward and backward pass (train.*); the results do not depend on it.
void configure_unet(nn::UNet2DConditionModel& unet, const config::TrainConfig& train, const torch::Device& device) {
  unet->set_gradient_checkpointing(train.gradient_checkpointing);
  unet->set_channels_last(train.channels_last);
  unet->set_fused_kernels(fused_kernels(train, device));
  if (fuse_projections(train, device)) unet->fuse_projections();
}

// The checkpoint's adapters and optimizer state on every rank (one device broadcast from rank
// 0), and on rank 0 the history the loop continues: metrics up to the checkpoint's step and
// the latest validation images.
LoopStart restore_progress(StartPoint& start, const TrainedAdapters& adapters, dist::Collectives& comm,
                           const Logger& log) {
  LoopStart loop;
  if (!start.resumed) return loop;
  const bool writer = comm.rank() == 0;
  restore_adapters(writer ? &start.checkpoint->checkpoint : nullptr,
                   writer ? start.checkpoint->path.string() : std::string(), adapters.models(), comm.device());
  loop.step = start.step;
  loop.loss_scale = std::make_pair(start.loss_scale, start.loss_scale_good_steps);
  loop.skipped_steps = start.skipped_steps;
  if (!writer) return loop;
  for (const auto& row : start.checkpoint->checkpoint.metrics) {
    if (row.step <= start.step) loop.metrics.push_back(row);
  }
  loop.samples = start.checkpoint->checkpoint.samples;
  loop.progress_grid = start.checkpoint->checkpoint.progress_grid;
  log.info("resumed from " + start.checkpoint->path.string() + " at step " + std::to_string(start.step));
  start.checkpoint.reset();  // free its tensors
  return loop;
}

void log_plan(const StepPlan& plan, const TrainingData& data, const std::string& prediction_type,
              const model::UNetFlops& flops, int resolution, const Logger& log) {
  const bool mixed = !data.mix.empty();
  const std::string batch = mixed ? std::to_string(2 * plan.batch_size) + " (instance and class examples mixed)"
                                  : std::to_string(plan.batch_size) + (plan.prior ? " (+ as many class images)" : "");
  log.info("training " + std::to_string(plan.max_steps) + " steps: " + std::to_string(data.dataset_size()) +
           " examples, batch " + batch + " x " + std::to_string(plan.grad_accum) + " accumulation, " +
           std::to_string(plan.steps_per_epoch) + " steps per epoch, prediction " + prediction_type);
  // The bucket table: which sizes the steps train at and how often.
  const auto& groups = data.instance.groups;
  const bool bucketed =
      mixed || groups.size() > 1 || groups[0].bucket.width != resolution || groups[0].bucket.height != resolution;
  const std::vector<std::int64_t> sizes = data.order_groups();
  const std::int64_t global = plan.batch_size * plan.world_size * (mixed ? 2 : 1);
  for (std::size_t k = 0; bucketed && k < sizes.size(); ++k) {
    const std::int64_t batches = plan.order.group_batches(k);
    const std::string name = mixed ? data.mix.group_size(k).name() : groups[k].bucket.name();
    std::string kinds;
    if (mixed) {
      const std::int64_t cls = data.mix.class_examples(k);
      kinds = " (" + std::to_string(sizes[k] - cls) + " instance, " + std::to_string(cls) + " class)";
    }
    log.info("bucket " + name + ": " + std::to_string(sizes[k]) + (sizes[k] == 1 ? " example" : " examples") + kinds +
             ", " + std::to_string(batches) + (batches == 1 ? " global batch" : " global batches") + " per epoch" +
             (sizes[k] < global ? " (filled up by repeating its examples)" : ""));
  }
  // Analytic model FLOPs, the yardstick for MFU (docs/benchmarks.md).
  log.info("UNet model FLOPs per image at " + std::to_string(resolution) + " px: forward " +
           util::format_with("%.4g", flops.forward / 1e9) + " GFLOP, LoRA training step " +
           util::format_with("%.4g", flops.lora_training_step / 1e9) + " GFLOP");
}

// The learning rates the run trains at, and Prodigy's authors' advice (lr near 1.0); an
// adapter scale alpha / rank far from 1 (diffusers: 1, kohya: often 0.5) learns nothing or
// diverges, so it is pointed out.
void log_optimizer(const config::RunConfig& cfg, const StepPlan& plan, const Logger& log) {
  const double scale = cfg.lora.alpha.value_or(static_cast<double>(cfg.lora.rank)) / static_cast<double>(cfg.lora.rank);
  if (scale < 1e-3 || scale > 1e3) {
    log.warn("lora.alpha / lora.rank = " + util::format_number(scale) +
             " scales every adapter's update; diffusers trains at 1 (alpha = rank), kohya usually at 0.5 or 1");
  }
  if (cfg.train.scale_lr) {
    log.info("train.scale_lr: learning rate " + util::format_number(cfg.train.learning_rate) + " x " +
             std::to_string(plan.grad_accum * plan.batch_size * plan.world_size) +
             " (accumulation x batch x ranks) = " + util::format_number(plan.learning_rate));
  }
  if (cfg.optimizer.kind != "prodigy") return;
  if (plan.learning_rate <= 0.1) {
    log.warn("optimizer.kind = \"prodigy\" with learning rate " + util::format_number(plan.learning_rate) +
             ": Prodigy estimates the step size itself and its authors advise a learning rate near 1.0");
  }
  if (cfg.lora.train_text_encoder) {
    log.info("Prodigy steps the text-encoder adapters at the UNet's learning rate, as diffusers does "
             "(lora.text_encoder_lr is not used)");
  }
}

// The LoRA files (rank 0), with what their metadata says about the run.
LoraFiles export_lora(const TrainedAdapters& adapters, const config::RunConfig& cfg, const RunSettings& s,
                      const StepPlan& plan, const TrainingData& data, const TrainSummary& summary,
                      std::time_t started_at, const Logger& log) {
  RunFacts facts;
  facts.steps = summary.steps;
  facts.batches_per_epoch = plan.order.batches_per_epoch();
  facts.epoch = summary.steps * plan.grad_accum / std::max<std::int64_t>(facts.batches_per_epoch, 1);
  facts.instance_images = static_cast<std::int64_t>(data.instance.images_used);
  const std::vector<std::int64_t> sizes = data.order_groups();
  for (std::size_t k = 0; k < sizes.size(); ++k) {
    const data::BucketSize b = !data.mix.empty() ? data.mix.group_size(k) : data.instance.groups.at(k).bucket;
    facts.buckets.push_back({{b.width, b.height}, sizes[k]});
  }
  facts.class_images = static_cast<std::int64_t>(data.klass.images_used);
  facts.train_examples = data.instance.size();
  for (const auto& sub : data.subsets) facts.subset_images.push_back(static_cast<std::int64_t>(sub.images));
  facts.started_at = started_at;
  facts.learning_rate = plan.learning_rate;
  return write_lora_outputs(adapters, cfg, s, facts, log);
}

void log_done(const TrainSummary& summary, const model::UNetFlops& flops, double run_seconds, const Logger& log) {
  if (summary.steps == summary.start_step) {
    log.info("done: nothing was left to train at step " + std::to_string(summary.steps) + "; total " +
             util::format_duration(run_seconds));
    return;
  }
  const auto& t = summary.times;
  const double steps_run = static_cast<double>(std::max<std::int64_t>(summary.steps - summary.start_step, 1));
  auto per_step = [&](double seconds) { return util::format_with("%.3f", seconds / steps_run); };
  log.info("done: " + std::to_string(summary.steps) + " steps in " + util::format_duration(summary.train_seconds) +
           " (" + util::format_with("%.2f", summary.images_per_second) + " img/s; per step: data " +
           per_step(t.data_s) + " s, forward " + per_step(t.forward_s) + " s, backward " + per_step(t.backward_s) +
           " s, all-reduce " + per_step(t.allreduce_s) + " s, optimizer " + per_step(t.optimizer_s) +
           " s); peak memory " + util::format_bytes(static_cast<double>(summary.peak_rss_bytes)) +
           " RSS; UNet model FLOP rate " +
           util::format_with("%.4g", summary.images_per_second * flops.lora_training_step / 1e9) + " GFLOP/s; total " +
           util::format_duration(run_seconds));
}

// The run after rank 0's checks and locks.
TrainSummary run_phases(const config::RunConfig& cfg, RunSettings& settings, const Logger& log,
                        dist::Collectives& comm, int local_rank, const PreemptionSignals& signals,
                        const util::Stopwatch& run_clock) {
  const std::time_t started_at = std::time(nullptr);
  StartPoint start = agree_on_start(cfg, settings, log, comm.host());
  log_placement(settings, log, comm, local_rank);
  stop_if_preempted(signals, comm.host(), "preemption check after the start point");

  pipeline::SdxlPipeline pipe = load_base_model(cfg.model, settings, log);
  check_scheduler_fits(cfg.train, pipe.scheduler_config, cfg.model.pretrained);
  check_step_fits(pipe, cfg.train, settings, comm.host());
  stop_if_preempted(signals, comm.host(), "preemption check after loading the model");
  if (settings.prior) {
    const auto subsets = config::resolve_subsets(cfg.data);
    for (std::size_t k = 0; k < subsets.size(); ++k) {
      ensure_class_images(pipe, cfg, subsets[k], k, settings, log, comm.host(), signals);
    }
  }
  // Before the prompts are tokenized: they read TOK as the new tokens.
  auto token_init = at::detail::createCPUGenerator(derive_seed(settings.seed, kTokenInitStream));
  const std::unique_ptr<PivotalTuning> pivotal = PivotalTuning::start(cfg.lora, pipe, token_init);
  if (pivotal) log.info("pivotal tuning: " + pivotal->abstractions().describe() + " in both tokenizers");
  const TrainingData data = encode_training_data(
      cfg, settings, pipe, log, comm.host(),
      [&] {
        maybe_inject_fault(comm.rank(), -1);
        stop_if_preempted(signals, comm.host(), "preemption check between images being encoded");
      },
      cache_key(cfg, settings, start, pipe, comm.host()), [&] { return signals.requested(); });
  stop_if_preempted(signals, comm.host(), "preemption check after encoding the data");

  const StepPlan plan(cfg.train, settings.prior, data.order_groups(), comm.world_size(), settings.seed,
                      !data.mix.empty());
  auto init = at::detail::createCPUGenerator(derive_seed(settings.seed, kLoraInitStream));
  TrainedAdapters adapters(cfg, plan.learning_rate, pipe, init, pivotal.get());
  configure_unet(pipe.unet, cfg.train, settings.device);
  log.info(adapters.describe());
  if (pivotal && PivotalTuning::pivot_step(cfg.lora.train_text_encoder_ti_frac, plan.max_steps) == 0) {
    log.warn("lora.train_text_encoder_ti_frac = " + util::format_number(cfg.lora.train_text_encoder_ti_frac) +
             " of " + std::to_string(plan.max_steps) + " steps leaves no step in which the new embeddings train");
  }
  log_optimizer(cfg, plan, log);
  LoopStart loop_start = restore_progress(start, adapters, comm, log);
  const model::UNetFlops flops = model::unet_flops(pipe.unet->config(), settings.resolution, settings.resolution);
  log_plan(plan, data, loss_options(cfg.train, cfg.prior, pipe.scheduler_config.prediction_type).prediction_type,
           flops, settings.resolution, log);

  write_run_config(cfg, settings, comm);
  TrainSummary summary;
  summary.seed = settings.seed;
  const CheckpointWriter checkpoints(cfg, settings, plan, adapters, std::move(start.fingerprint), log);
  TrainingLoop loop({cfg, settings, log, comm, pipe, data, adapters, plan, signals, checkpoints},
                    std::move(loop_start), summary);
  const bool finished = loop.run();
  if (finished) {
    if (comm.rank() == 0) {
      const LoraFiles files = export_lora(adapters, cfg, settings, plan, data, summary, started_at, log);
      summary.lora_path = files.diffusers;
      summary.kohya_lora_path = files.kohya.value_or("");
    }
    comm.set_context("end of training");
    comm.host().barrier("end of training");
  }
  summary.peak_rss_bytes = util::peak_rss_bytes();
  if (finished) log_done(summary, flops, run_clock.seconds(), log);
  return summary;
}

}  // namespace

TrainSummary run_training(const config::RunConfig& cfg, const Logger& log, dist::Collectives& comm, int local_rank,
                          const PreemptionSignals& signals) {
  const util::Stopwatch run_clock;
  maybe_inject_fault(comm.rank(), 0);  // "signal:R:0": a preemption request during start-up
  RunSettings settings = resolve_settings(cfg, local_rank);
  std::optional<RunLocks> locks;
  if (comm.rank() == 0) {
    check_run_inputs(cfg, settings);
    locks.emplace(settings, cfg.checkpoint.dir.has_value());
  }
  try {
    return run_phases(cfg, settings, log, comm, local_rank, signals, run_clock);
  } catch (const PreemptedBeforeTraining&) {
    log.warn("preemption requested (" + signals.describe() + ") before the first step: exiting with code " +
             std::to_string(kExitPreempted) + ", nothing to checkpoint");
    TrainSummary summary;
    summary.preempted = true;
    summary.peak_rss_bytes = util::peak_rss_bytes();
    return summary;
  } catch (const UsageError&) {
    if (locks) locks->abandon();
    throw;
  }
}

}  // namespace sdxl::train
