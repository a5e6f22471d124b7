#include "sdxl_dreambooth/train/training_loop.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/train/data_order.h"
#include "sdxl_dreambooth/train/fault_injection.h"
#include "sdxl_dreambooth/train/gradient_sync.h"
#include "sdxl_dreambooth/train/model_card.h"
#include "sdxl_dreambooth/train/progress_grid.h"
#include "sdxl_dreambooth/train/training_setup.h"
#include "sdxl_dreambooth/train/validation.h"
#include "sdxl_dreambooth/util/memory_usage.h"
#include "sdxl_dreambooth/util/strings.h"

#include <algorithm>
#include <cstring>

namespace sdxl::train {

TrainingLoop::TrainingLoop(const LoopParts& parts, LoopStart start, TrainSummary& summary)
    : p_(parts),
      summary_(summary),
      start_step_(start.step),
      // On the training device, beside the batches (noise_schedule.h).
      schedule_(sampling::NoiseSchedule(parts.pipe.scheduler_config).to(parts.settings.device)),
      scaler_(parts.settings.mixed_precision == "fp16"),
      noise_base_(derive_seed(derive_seed(parts.settings.seed, kNoiseStream),
                              static_cast<std::uint64_t>(parts.comm.rank()))),
      metrics_rows_(std::move(start.metrics)),
      last_samples_(std::move(start.samples)),
      progress_grid_(std::move(start.progress_grid)),
      metrics_(parts.settings.output / "metrics.csv", metrics_rows_, parts.comm.rank() == 0) {
  if (start.loss_scale) scaler_.restore(start.loss_scale->first, start.loss_scale->second);
  if (p_.cfg.logging.tensorboard && p_.comm.rank() == 0) {
    tensorboard_.emplace(p_.settings.output / "logs", start_step_, config::to_toml(p_.cfg));
  }
  for (const auto& row : metrics_rows_) summary_.losses.push_back(row.loss);
  summary_.skipped_steps = start.skipped_steps;
  summary_.start_step = start_step_;
  summary_.steps = start_step_;
  batch_options_.prior = p_.settings.prior;
  batch_options_.noise_offset = p_.cfg.train.noise_offset;
  batch_options_.min_timestep = p_.cfg.train.min_timestep;
  batch_options_.max_timestep = p_.cfg.train.max_timestep.value_or(schedule_.num_train_timesteps());
  batch_options_.multires_iterations = p_.cfg.train.multires_noise_iterations;
  batch_options_.multires_discount = p_.cfg.train.multires_noise_discount;
  batch_options_.caption_dropout = p_.cfg.data.caption_dropout;
  batch_options_.scaling_factor = p_.pipe.vae->config().scaling_factor;
  const auto& vae = p_.pipe.vae->config();
  if (vae.latents_mean) {
    const auto stats = [&](const std::vector<double>& v) {
      return torch::tensor(v, torch::kDouble).to(p_.settings.device, torch::kFloat).view({1, -1, 1, 1});
    };
    batch_options_.latents_mean = stats(*vae.latents_mean);
    batch_options_.latents_std = stats(*vae.latents_std);
  }
  batch_options_.device = p_.settings.device;
  batch_options_.text_encoders = text_encoders_run_each_step(p_.cfg) ? &p_.pipe : nullptr;
  batch_options_.text_encoder_grad = p_.adapters.trains_text_encoders() || p_.adapters.pivotal();
  batch_options_.shuffle_tags = p_.cfg.data.shuffle_tags;
  batch_options_.keep_tokens = p_.cfg.data.keep_tokens;
  batch_options_.caption_separator = p_.cfg.data.caption_separator;
  parts_ = step_parts();
}

TrainStepParts TrainingLoop::step_parts() {
  TrainStepParts parts;
  parts.unet = p_.pipe.unet;
  parts.schedule = &schedule_;
  if (edm_style(p_.cfg.train, p_.pipe.scheduler_config)) {
    parts.edm = &edm_schedule_.emplace(sampling::EdmSchedule(p_.pipe.scheduler_config).to(p_.settings.device));
    p_.log.info(std::string("EDM-style training") +
                (p_.pipe.scheduler_config.edm() ? " (the base's scheduler is " + p_.pipe.scheduler_config.class_name + ")"
                                                : " on the Euler schedule of the base's betas"));
  }
  parts.loss = loss_options(p_.cfg.train, p_.cfg.prior, p_.pipe.scheduler_config.prediction_type);
  parts.unet_lora = &p_.adapters.unet();
  parts.params = p_.adapters.params();
  parts.optimizer = &p_.adapters.optimizer();
  parts.scaler = &scaler_;
  parts.comm = &p_.comm;
  parts.grad_accum = p_.plan.grad_accum;
  parts.max_grad_norm = p_.cfg.train.max_grad_norm;
  parts.signals = &p_.signals;
  if (p_.settings.cuda_graphs) {
    parts.graph = &graph_.emplace(StepGraph::Mode::kCuda);
    p_.log.info("CUDA graphs: the first step records its forward and backward pass, later steps replay it");
  }
  return parts;
}

bool TrainingLoop::run() {
  p_.adapters.set_training(p_.pipe, true);
  warm_up_gradient_all_reduce(parts_.params, p_.comm.device());
  p_.adapters.check_weights_agree(p_.comm.host(), 0);
  train_clock_.restart();
  window_clock_.restart();
  const std::int64_t max_steps = p_.plan.max_steps;
  for (std::int64_t step = start_step_; step < max_steps; ++step) {
    const StepResult r = train_step(step);
    if (r.abandoned) {
      settle();
      return stop_within_step(step);
    }
    const std::int64_t done = step + 1;
    const bool last = done == max_steps;
    // Every rank stops on the same step: the flag went through an all-reduce.
    const bool stop = r.stop_requested;
    const bool log_now = done % p_.cfg.logging.every_steps == 0 || last;
    const bool validate_now = !last && !stop && validation_due(p_.cfg.validation, done, p_.plan.steps_per_epoch);
    const bool save = !last && done % p_.settings.checkpoint_every == 0;
    if (log_now || last || stop || validate_now || save) settle();
    if (log_now) log_progress(done);
    if (stop && !last) {
      stop_for_preemption(done);
      return false;
    }
    if (validate_now) validate(done);
    if (save) write_checkpoint(done);
  }
  finish();
  return true;
}

StepResult TrainingLoop::train_step(std::int64_t step) {
  const util::Stopwatch watch;
  maybe_inject_fault(p_.comm.rank(), step + 1);
  auto noise_gen = at::detail::createCPUGenerator(derive_seed(noise_base_, static_cast<std::uint64_t>(step)));
  if (p_.cfg.lora.dropout > 0) {
    // Dropout draws from LibTorch's default generators: seeded per (rank, step), a resumed run
    // draws the masks the uninterrupted one drew.
    torch::manual_seed(derive_seed(derive_seed(derive_seed(p_.settings.seed, kDropoutStream),
                                               static_cast<std::uint64_t>(p_.comm.rank())),
                                   static_cast<std::uint64_t>(step)));
  }
  const double lr = p_.plan.lr.lr(step);
  const double scale_before = scaler_.scale();
  PivotalTuning* pivotal = p_.adapters.pivotal();
  if (pivotal) {
    const std::int64_t pivot = PivotalTuning::pivot_step(p_.cfg.lora.train_text_encoder_ti_frac, p_.plan.max_steps);
    // After the pivot the embeddings get no gradient, so the optimizer leaves them alone.
    batch_options_.text_encoder_grad = step < pivot;
    if (step == pivot || (step == start_step_ && step > pivot)) {
      p_.log.info("step " + std::to_string(step + 1) + ": pivotal tuning's embeddings are frozen from here on "
                  "(lora.train_text_encoder_ti_frac = " + util::format_number(p_.cfg.lora.train_text_encoder_ti_frac) +
                  " of " + std::to_string(p_.plan.max_steps) + " steps)");
    }
  }
  const StepResult r = run_train_step(parts_, step, lr, [&](std::int64_t micro) {
    return assemble_batch(p_.data, p_.plan.rows(step, micro, p_.comm.rank()), noise_gen, batch_options_);
  }, summary_.times);
  if (r.abandoned) return r;
  // ref: the advanced script retracts the embeddings after every optimizer.step(), pivot or not.
  if (pivotal) pivotal->renormalize();
  if (r.skipped) {
    ++summary_.skipped_steps;
    p_.log.warn("step " + std::to_string(step + 1) + ": non-finite fp16 gradients, step skipped; loss scale " +
                util::format_number(scale_before) + " -> " + util::format_number(scaler_.scale()));
  }
  summary_.steps = step + 1;
  ++window_steps_;
  last_lr_ = lr;
  pending_.push_back({step + 1, lr, watch.seconds(), r});
  return r;
}

StepScalars TrainingLoop::step_scalars(double lr) const {
  StepScalars s;
  if (p_.adapters.trains_text_encoders() && p_.cfg.optimizer.kind != "prodigy") {
    s.text_encoder_lr = lr * p_.cfg.lora.text_encoder_lr / p_.plan.learning_rate;
  }
  if (p_.cfg.optimizer.kind == "prodigy") s.step_size = p_.adapters.optimizer().effective_lr(lr);
  s.images_per_step = static_cast<double>(p_.plan.images_per_step());
  if (scaler_.enabled()) {
    s.loss_scale = scaler_.scale();
    s.skipped_steps = summary_.skipped_steps;
  }
  return s;
}

void TrainingLoop::settle() {
  std::vector<StepResult> results;
  for (const auto& p : pending_) results.push_back(p.result);
  const std::vector<StepValues> values = read_step_values(results);
  for (std::size_t i = 0; i < pending_.size(); ++i) {
    const PendingStep& p = pending_[i];
    check_step_finite(p.step, p.result, values[i]);
    summary_.losses.push_back(values[i].loss);
    window_loss_ += values[i].loss;
    last_grad_norm_ = values[i].grad_norm;
    if (p_.comm.rank() == 0) {
      metrics_rows_.push_back({p.step, values[i].loss, p.lr, values[i].grad_norm, p.seconds});
      metrics_.append(metrics_rows_.back());
      if (tensorboard_) tensorboard_->step(metrics_rows_.back(), step_scalars(p.lr));
    }
  }
  pending_.clear();
  metrics_.flush();
  if (tensorboard_) tensorboard_->flush();
}

void TrainingLoop::log_progress(std::int64_t step) {
  p_.adapters.check_weights_agree(p_.comm.host(), step);
  const double window_s = window_clock_.seconds();
  const double ips = static_cast<double>(window_steps_ * p_.plan.images_per_step()) / std::max(window_s, 1e-9);
  const double elapsed = train_clock_.seconds();
  const double eta = elapsed / static_cast<double>(step) * static_cast<double>(p_.plan.max_steps - step);
  // Prodigy moves by d · lr: the estimate is what a user watches.
  const double effective = p_.adapters.optimizer().effective_lr(last_lr_);
  const std::string step_size =
      effective != last_lr_ ? " (step size " + util::format_with("%.3g", effective) + ")" : std::string();
  p_.log.info("step " + std::to_string(step) + "/" + std::to_string(p_.plan.max_steps) + " loss " +
              util::format_with("%.4f", window_loss_ / static_cast<double>(window_steps_)) + " lr " +
              util::format_with("%.3g", last_lr_) + step_size + " grad_norm " + util::format_with("%.3g", last_grad_norm_) + " " +
              util::format_with("%.2f", ips) + " img/s ETA " + util::format_duration(eta));
  window_loss_ = 0;
  window_steps_ = 0;
  window_clock_.restart();
}

void TrainingLoop::stop_for_preemption(std::int64_t step) {
  p_.log.warn("preemption requested (" + p_.signals.describe() +
              "): checkpointing step " + std::to_string(step) + " and exiting with code " +
              std::to_string(kExitPreempted) + " for the job script to requeue");
  write_checkpoint(step);
  summary_.preempted = true;
}

// A preemption request between the micro-batches of step `step` + 1: the weights are still
// those after `step` steps; checkpoint them, unless this run has not trained a step yet and
// no checkpoint holds anything newer than what exists.
bool TrainingLoop::stop_within_step(std::int64_t step) {
  if (step == start_step_) {
    p_.log.warn("preemption requested (" + p_.signals.describe() + ") during step " + std::to_string(step + 1) +
                ", before this run finished a step: exiting with code " + std::to_string(kExitPreempted) +
                (step == 0 ? ", nothing to checkpoint" : ", the checkpoint of step " + std::to_string(step) + " stays"));
    summary_.preempted = true;
    return false;
  }
  p_.log.warn("preemption requested during step " + std::to_string(step + 1) + ": the step is given up");
  stop_for_preemption(step);
  return false;
}

void TrainingLoop::validate(std::int64_t step, bool last) {
  p_.adapters.set_training(p_.pipe, false);
  last_samples_ = run_validation(p_.pipe, p_.cfg.validation, p_.settings, p_.cfg.model.pretrained, step, last, p_.log,
                                 p_.signals, p_.comm.host(), &compared_with_base_);
  p_.adapters.set_training(p_.pipe, true);
  if (tensorboard_) tensorboard_->validation(last_samples_, step);
  if (p_.comm.rank() == 0) {
    progress_grid_ = write_progress_grid(p_.settings.output / "samples", p_.cfg.validation.prompts);
  }
}

void TrainingLoop::write_checkpoint(std::int64_t step) {
  RunProgress progress;
  progress.step = step;
  progress.scaler = &scaler_;
  progress.skipped_steps = summary_.skipped_steps;
  progress.metrics = &metrics_rows_;
  progress.samples = &last_samples_;
  progress.progress_grid = progress_grid_;
  const std::string path = p_.checkpoints.write(progress, p_.comm.host());
  if (path.empty()) return;
  summary_.last_checkpoint = path;
  ModelCardFacts card;
  card.steps = step;
  card.max_steps = p_.plan.max_steps;
  if (!metrics_rows_.empty()) card.last_loss = metrics_rows_.back().loss;
  card.samples = &last_samples_;
  card.compare_grid = compared_with_base_;
  write_model_card(p_.cfg, p_.settings, card);
}

// The run's speed over the steps alone; then the last validation and checkpoint, unless a
// resumed run had nothing left to train.
void TrainingLoop::finish() {
  summary_.train_seconds = train_clock_.seconds();
  const std::int64_t steps_run = std::max<std::int64_t>(summary_.steps - start_step_, 1);
  summary_.images_per_second =
      static_cast<double>(steps_run * p_.plan.images_per_step()) / std::max(summary_.train_seconds, 1e-9);
  if (start_step_ >= p_.plan.max_steps) {
    p_.log.info("the checkpoint is already at step " + std::to_string(start_step_) + " of " +
                std::to_string(p_.plan.max_steps) + ": nothing to train, exporting the LoRA");
    return;
  }
  if (!p_.cfg.validation.prompts.empty()) validate(summary_.steps, true);
  write_checkpoint(summary_.steps);
}

}  // namespace sdxl::train
