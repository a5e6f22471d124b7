#include "sdxl_dreambooth/train/checkpoint_writer.h"

#include "sdxl_dreambooth/build_features.h"
#include "sdxl_dreambooth/train/checkpoint_dir.h"
#include "sdxl_dreambooth/util/host_name.h"
#include "sdxl_dreambooth/util/stopwatch.h"
#include "sdxl_dreambooth/util/strings.h"

#include <time.h>

#include <ctime>
#include <filesystem>

namespace sdxl::train {
namespace {

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

CheckpointWriter::CheckpointWriter(const config::RunConfig& cfg, const RunSettings& settings, const StepPlan& plan,
                                   const TrainedAdapters& adapters, model::ModelFingerprint fingerprint,
                                   const Logger& log)
    : cfg_(cfg), settings_(settings), plan_(plan), adapters_(adapters), fingerprint_(std::move(fingerprint)),
      log_(log) {}

Checkpoint CheckpointWriter::capture(const RunProgress& p) const {
  const BuildFeatures features = build_features();
  Checkpoint c;
  TrainingState& st = c.state;
  st.step = p.step;
  st.max_steps = plan_.max_steps;
  st.data_position = p.step * plan_.grad_accum;
  st.epoch = st.data_position / plan_.order.batches_per_epoch();
  st.samples_seen = p.step * plan_.examples_per_step();
  st.world_size = plan_.world_size;
  st.seed = settings_.seed;
  st.lr_scheduler = plan_.lr.options().kind;
  st.lr = p.step > 0 ? plan_.lr.lr(p.step - 1) : 0.0;
  st.loss_scale = p.scaler->scale();
  st.loss_scale_good_steps = p.scaler->good_steps();
  st.skipped_steps = p.skipped_steps;
  c.adapters = capture_adapters(adapters_.models());
  c.tokens = capture_tokens(adapters_.models());
  c.optimizer = adapters_.optimizer_options();
  const Optimizer& optimizer = adapters_.optimizer();
  c.optimizer_type = optimizer.kind();
  c.optimizer_state = optimizer.state_names();
  c.optimizer_scalars = optimizer.scalars();
  c.config_toml = config::to_toml(cfg_);
  c.provenance = {{"program_version", features.program_version},
                  {"git_commit", features.git_commit},
                  {"torch_version", features.torch_version},
                  {"hdf5_version", features.hdf5_version},
                  {"created", utc_now()},
                  {"host", util::host_name()},
                  {"world_size", std::to_string(plan_.world_size)},
                  {"device", settings_.device.str()},
                  {"mixed_precision", settings_.mixed_precision},
                  {"base_model", fingerprint_.spec},
                  {"base_model_path", fingerprint_.root}};
  c.base_model_files = fingerprint_.files;
  c.metrics = *p.metrics;
  c.samples = *p.samples;
  c.progress_grid = p.progress_grid;
  return c;
}

std::string CheckpointWriter::write(const RunProgress& progress, dist::HostCollectives& comm) const {
  std::string written;
  if (comm.rank() == 0) {
    const util::Stopwatch watch;
    const std::filesystem::path path = save_checkpoint(settings_.checkpoint_dir, capture(progress));
    std::string pruned;
    if (settings_.keep_last > 0) {
      const auto removed = prune_checkpoints(settings_.checkpoint_dir, settings_.keep_last);
      if (!removed.empty()) pruned = ", pruned " + std::to_string(removed.size()) + " old";
    }
    written = path.string();
    std::error_code size_ec;
    const auto bytes = std::filesystem::file_size(path, size_ec);
    log_.info("checkpoint " + written + " (" + util::format_bytes(static_cast<double>(bytes)) + ", " +
              util::format_with("%.2f", watch.seconds()) + " s" + pruned + ")");
  }
  comm.barrier("checkpoint write");
  return written;
}

}  // namespace sdxl::train
