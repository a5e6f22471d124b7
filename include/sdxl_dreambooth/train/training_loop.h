// The optimizer steps of a run, from its start point to train.max_steps: each step's
// micro-batches, the logged progress and weight check every logging.every_steps, validation
// and checkpoints when due, and a checkpoint then a stop when a rank was asked to stop
// (preemption). A step's loss and gradient norm stay on the device until something needs
// them (train_step.h); they are read back together, and the run ends if one diverged, before
// anything built from the weights is written or logged.
#pragma once

#include "sdxl_dreambooth/config/run_config.h"
#include "sdxl_dreambooth/dist/collectives.h"
#include "sdxl_dreambooth/pipeline/sdxl_pipeline.h"
#include "sdxl_dreambooth/sampling/edm_schedule.h"
#include "sdxl_dreambooth/sampling/noise_schedule.h"
#include "sdxl_dreambooth/train/checkpoint_writer.h"
#include "sdxl_dreambooth/train/loss_scaler.h"
#include "sdxl_dreambooth/train/metrics_file.h"
#include "sdxl_dreambooth/train/preemption.h"
#include "sdxl_dreambooth/train/run_settings.h"
#include "sdxl_dreambooth/train/step_graph.h"
#include "sdxl_dreambooth/train/step_plan.h"
#include "sdxl_dreambooth/train/tensorboard_log.h"
#include "sdxl_dreambooth/train/train_step.h"
#include "sdxl_dreambooth/train/trained_adapters.h"
#include "sdxl_dreambooth/train/trainer.h"
#include "sdxl_dreambooth/train/training_batch.h"
#include "sdxl_dreambooth/train/training_data.h"
#include "sdxl_dreambooth/util/logger.h"
#include "sdxl_dreambooth/util/stopwatch.h"

#include <cstdint>
#include <optional>
#include <vector>

namespace sdxl::train {

// What the phases before the loop built.
struct LoopParts {
  const config::RunConfig& cfg;
  const RunSettings& settings;
  const Logger& log;
  dist::Collectives& comm;
  pipeline::SdxlPipeline& pipe;
  const TrainingData& data;
  TrainedAdapters& adapters;
  const StepPlan& plan;
  const PreemptionSignals& signals;
  const CheckpointWriter& checkpoints;
};

// Where the loop starts: step 0, or a checkpoint's step and, on rank 0, its history.
struct LoopStart {
  std::int64_t step = 0;
  std::optional<std::pair<double, std::int64_t>> loss_scale;  // scale and good steps, when resumed
  std::int64_t skipped_steps = 0;
  std::vector<MetricsRow> metrics;
  std::vector<SampleImage> samples;
  torch::Tensor progress_grid;
};

class TrainingLoop {
 public:
  TrainingLoop(const LoopParts& parts, LoopStart start, TrainSummary& summary);
  // Runs the remaining steps, then the final validation and checkpoint. False when preempted
  // (after its checkpoint).
  bool run();

 private:
  // A step whose loss and gradient norm are still on the device.
  struct PendingStep {
    std::int64_t step;  // 1-based
    double lr, seconds;
    StepResult result;
  };

  TrainStepParts step_parts();
  StepResult train_step(std::int64_t step);
  void settle();
  StepScalars step_scalars(double lr) const;
  void log_progress(std::int64_t step);
  void stop_for_preemption(std::int64_t step);
  void validate(std::int64_t step, bool last = false);
  bool stop_within_step(std::int64_t step);
  void write_checkpoint(std::int64_t step);
  void finish();

  LoopParts p_;
  TrainSummary& summary_;
  std::int64_t start_step_;
  sampling::NoiseSchedule schedule_;
  std::optional<sampling::EdmSchedule> edm_schedule_;  // EDM-style training
  DynamicLossScaler scaler_;
  // Noise and timesteps: a stream per (rank, step), so a run is reproducible for a given world
  // size and a resumed run draws exactly what the uninterrupted one would have.
  std::uint64_t noise_base_;
  BatchOptions batch_options_;
  std::optional<StepGraph> graph_;
  TrainStepParts parts_;
  std::vector<MetricsRow> metrics_rows_;   // rank 0: every step so far, for checkpoints
  std::vector<SampleImage> last_samples_;  // rank 0: the latest validation images
  torch::Tensor progress_grid_;            // rank 0: samples/progress.png's pixels
  bool compared_with_base_ = false;        // OUTPUT/compare.png drawn at the last validation
  MetricsFile metrics_;
  std::optional<TensorBoardLog> tensorboard_;  // rank 0, logging.tensorboard
  std::vector<PendingStep> pending_;
  util::Stopwatch train_clock_, window_clock_;
  double window_loss_ = 0;
  std::int64_t window_steps_ = 0;
  double last_lr_ = 0, last_grad_norm_ = 0;
};

}  // namespace sdxl::train
