#include "sdxl_dreambooth/train/start_point.h"

#include "sdxl_dreambooth/config/config.h"
#include "sdxl_dreambooth/config/resume_changes.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/train/training_setup.h"
#include "sdxl_dreambooth/util/stopwatch.h"
#include "sdxl_dreambooth/util/strings.h"

#include <cstdlib>

namespace sdxl::train {
namespace {

// Settings the checkpoint's run trained with that this run changes: allowed (a lower rate, a
// larger batch), but the result is then no longer what the uninterrupted run would give.
void warn_about_changed_settings(const std::string& config_toml, const config::RunConfig& cfg,
                                 const std::string& path, const Logger& log) {
  std::vector<std::string> changes;
  try {
    changes = config::resume_changes(config::load_config_text(config_toml, path + " /config").typed(), cfg);
  } catch (const Error& e) {
    const std::string why = e.what();
    log.warn(path + ": the configuration saved in it does not load here, so changed settings are not checked (" +
             why.substr(0, why.find('\n')) + ")");
    return;
  }
  if (changes.empty()) return;
  log.warn("resuming " + path + " with settings other than its run's: " + util::join(changes, ", ") +
           "; training continues, but where they change what a step computes, not as that run would have "
           "(not bitwise reproducible)");
}

// Rank 0: the base model's fingerprint and the checkpoint to resume, checked against both.
void find_start_checkpoint(const config::RunConfig& cfg, const RunSettings& s, const Logger& log, StartPoint& start) {
  const util::Stopwatch watch;
  start.fingerprint = model::fingerprint_pipeline(cfg.model.pretrained, cfg.model.revision, cfg.model.variant,
                                                  cfg.model.vae);
  log.info("base model: " + std::to_string(start.fingerprint.files.size()) + " weight files, " +
           util::format_bytes(static_cast<double>(start.fingerprint.total_bytes())) + " (sha256 in " +
           util::format_with("%.1f", watch.seconds()) + " s)");
  const char* restarts = std::getenv("SLURM_RESTART_COUNT");
  const bool requeued = restarts && std::atoll(restarts) > 0;
  start.checkpoint = find_resume_checkpoint(cfg.checkpoint.resume, s.checkpoint_dir, requeued, log);
  if (!start.checkpoint) return;
  const std::string path = start.checkpoint->path.string();
  const std::string diff =
      model::fingerprint_difference(start.checkpoint->checkpoint.base_model_files, start.fingerprint.files);
  if (!diff.empty()) {
    throw UsageError(path + " was trained on another base model than " + util::quoted(cfg.model.pretrained) + ": " +
                         diff,
                     "resume with the model.pretrained (and model.variant) of the run that wrote it");
  }
  check_resume_compatible(start.checkpoint->checkpoint, path, adapter_settings(cfg.lora),
                          optimizer_type(cfg.optimizer),
                          cfg.lora.train_text_encoder_ti
                              ? text::TokenAbstractions::parse(cfg.lora.token_abstraction,
                                                               cfg.lora.num_new_tokens_per_abstraction)
                              : text::TokenAbstractions());
  warn_about_changed_settings(start.checkpoint->checkpoint.config_toml, cfg, path, log);
}

}  // namespace

std::vector<AdapterSettings> adapter_settings(const config::LoraConfig& lora) {
  const nn::LoraSpec spec = lora_spec(lora);
  std::vector<AdapterSettings> out{{"unet", spec.rank, spec.alpha, spec.targets, spec.dora, spec.conv_rank, spec.conv_alpha}};
  if (lora.train_text_encoder) {
    for (const char* m : {"text_encoder", "text_encoder_2"}) {
      out.push_back({m, spec.rank, spec.alpha, lora.text_encoder_targets, spec.dora});
    }
  }
  return out;
}

StartPoint agree_on_start(const config::RunConfig& cfg, RunSettings& s, const Logger& log,
                          dist::HostCollectives& comm) {
  const int rank = comm.rank(), world = comm.world_size();
  // An unset seed is drawn once, on rank 0 (seeds are < 2^32: exact in a double).
  s.seed = static_cast<std::uint64_t>(comm.all_reduce_max(rank == 0 ? double(s.seed) : -1.0, "seed"));
  StartPoint start;
  if (rank == 0) find_start_checkpoint(cfg, s, log, start);
  // [resumed, step, seed, world size, loss scale, good steps, skipped steps]
  std::vector<double> head(7, 0.0);
  if (start.checkpoint) {
    const TrainingState& st = start.checkpoint->checkpoint.state;
    head = {1.0, double(st.step), double(st.seed), double(st.world_size), st.loss_scale,
            double(st.loss_scale_good_steps), double(st.skipped_steps)};
  }
  comm.broadcast(head, 0, "resume state");
  const auto head_int = [&](int i) { return static_cast<std::int64_t>(head[static_cast<std::size_t>(i)]); };
  start.resumed = head[0] > 0;
  if (!start.resumed) return start;
  start.step = head_int(1);
  start.loss_scale = head[4];
  start.loss_scale_good_steps = head_int(5);
  start.skipped_steps = head_int(6);
  const auto ckpt_seed = static_cast<std::uint64_t>(head_int(2));
  if (cfg.train.seed && static_cast<std::uint64_t>(*cfg.train.seed) != ckpt_seed) {
    log.warn("train.seed = " + std::to_string(*cfg.train.seed) + " differs from the checkpoint's seed " +
             std::to_string(ckpt_seed) + "; the checkpoint's seed is used");
  }
  s.seed = ckpt_seed;
  if (head_int(3) != world) {
    log.warn("the checkpoint was written by " + std::to_string(head_int(3)) + " rank(s), this job has " +
             std::to_string(world) + ": training continues, but the data order and noise now differ from an "
             "uninterrupted run (not bitwise reproducible)");
  }
  return start;
}

}  // namespace sdxl::train
