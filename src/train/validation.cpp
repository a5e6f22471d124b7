#include "sdxl_dreambooth/train/validation.h"

#include "sdxl_dreambooth/pipeline/comparison_grid.h"
#include "sdxl_dreambooth/pipeline/generation_batches.h"
#include "sdxl_dreambooth/pipeline/image_png.h"
#include "sdxl_dreambooth/io/durable_file.h"
#include "sdxl_dreambooth/train/fault_injection.h"
#include "sdxl_dreambooth/util/stopwatch.h"
#include "sdxl_dreambooth/util/strings.h"

#include <filesystem>

namespace fs = std::filesystem;

namespace sdxl::train {
namespace {

pipeline::GenerationRequest validation_request(const config::ValidationConfig& v, const RunSettings& s) {
  pipeline::GenerationRequest r;
  r.prompts = v.prompts;
  r.negative_prompt = v.negative_prompt;
  r.steps = v.steps;
  r.guidance_scale = v.guidance_scale;
  r.seed = static_cast<std::uint64_t>(v.seed.value_or(static_cast<std::int64_t>(s.seed)));
  r.width = r.height = v.resolution.value_or(s.resolution);
  r.images_per_prompt = v.num_images;
  r.scheduler = v.scheduler;
  r.batch_size = v.batch_size;
  return r;
}

struct DrawingStopped {};

// Whole batches per rank (batch j on rank j mod world), gathered on rank 0. A preemption
// request stops this rank's drawing at the next sampler step (its images are left out), so a
// validation does not hold the job past Slurm's grace time; `cut` is then true on every rank.
std::vector<pipeline::GeneratedImage> draw(pipeline::SdxlPipeline& pipe, const pipeline::GenerationRequest& r,
                                           const PreemptionSignals& signals, dist::HostCollectives& comm, bool& cut) {
  const auto mine = pipeline::rank_share(pipeline::plan_batches(r), comm.rank(), comm.world_size());
  std::vector<pipeline::GeneratedImage> images;
  bool stopped = false;
  try {
    if (!mine.empty()) {
      images = pipe.generate(r, mine, [&](std::int64_t, std::int64_t) {
        maybe_inject_fault(comm.rank(), -2);
        if (signals.requested()) throw DrawingStopped{};
      });
    }
  } catch (const DrawingStopped&) {
    stopped = true;
    images.clear();
  }
  images = pipeline::gather_images(std::move(images), comm, r);
  cut = comm.all_reduce_max(stopped ? 1.0 : 0.0, "validation cut short?") > 0;
  return images;
}

// DIR/P-K.png with the settings in text chunks; `lora` says which adapters drew them.
void write_pngs(const fs::path& dir, const std::vector<pipeline::GeneratedImage>& images,
                const pipeline::GenerationRequest& r, const std::string& model, const std::string& lora) {
  fs::create_directories(dir);
  for (const auto& img : images) {
    const fs::path path = dir / (std::to_string(img.prompt_index) + "-" + std::to_string(img.image_index) + ".png");
    pipeline::write_image_png(path.string(), img,
                              {{"prompt", r.prompts[img.prompt_index]}, {"negative_prompt", r.negative_prompt},
                               {"seed", std::to_string(img.seed)}, {"steps", std::to_string(r.steps)},
                               {"guidance_scale", util::format_number(r.guidance_scale)}, {"scheduler", r.scheduler},
                               {"model", model}, {"lora_step", lora}, {"software", "sdxl-dreambooth"}});
  }
}

// The same prompts and seeds with every adapter at scale 0 and no new tokens (the base model) into
// samples/base/, and OUTPUT/compare.png: a row per image, base | fine-tuned. False when a
// preemption request stopped it.
bool draw_base_comparison(pipeline::SdxlPipeline& pipe, const pipeline::GenerationRequest& r,
                          const std::vector<pipeline::GeneratedImage>& tuned, const RunSettings& s,
                          const std::string& model, std::int64_t step, const Logger& log,
                          const PreemptionSignals& signals, dist::HostCollectives& comm) {
  const util::Stopwatch watch;
  bool cut = false;
  // The base model reads the prompts without pivotal tuning's tokens, as `generate` without
  // --embeddings does.
  const auto fine_tuned = [&] {
    pipe.set_lora_scale(1.0);
    pipe.set_added_tokens_enabled(true);
  };
  pipe.set_lora_scale(0.0);
  pipe.set_added_tokens_enabled(false);
  std::vector<pipeline::GeneratedImage> base;
  try {
    base = draw(pipe, r, signals, comm, cut);
  } catch (...) {
    fine_tuned();
    throw;
  }
  fine_tuned();
  if (cut) {
    if (comm.rank() == 0) log.warn("base model vs fine-tuned: left out, a preemption request stopped the drawing");
    return false;
  }
  if (comm.rank() != 0) return true;
  write_pngs(s.output / "samples" / "base", base, r, model, "none (base model)");
  const fs::path grid = s.output / "compare.png";
  pipeline::write_comparison_grid(grid.string() + ".tmp", base, tuned, r, "step " + std::to_string(step), 1.0);
  io::commit_file(grid.string() + ".tmp", grid.string());
  log.info("base model vs fine-tuned: " + grid.string() + " (" + util::format_with("%.1f", watch.seconds()) + " s)");
  return true;
}

}  // namespace

bool validation_due(const config::ValidationConfig& validation, std::int64_t step, std::int64_t steps_per_epoch) {
  if (validation.prompts.empty()) return false;
  if (validation.every_steps) return step % *validation.every_steps == 0;
  const std::int64_t epochs = validation.every_epochs.value_or(50);
  return step % (epochs * steps_per_epoch) == 0;
}

std::vector<SampleImage> run_validation(pipeline::SdxlPipeline& pipe, const config::ValidationConfig& v,
                                        const RunSettings& s, const std::string& model, std::int64_t step,
                                        bool last, const Logger& log, const PreemptionSignals& signals,
                                        dist::HostCollectives& comm, bool* compared_with_base) {
  const pipeline::GenerationRequest r = validation_request(v, s);
  const util::Stopwatch watch;
  bool cut = false;
  const auto images = draw(pipe, r, signals, comm, cut);
  if (comm.rank() == 0 && cut && last) {
    log.warn("preemption requested during the last validation: its drawing was cut short; the run is complete "
             "(every step trained), so it ends normally with its LoRA and last checkpoint");
  }
  if (comm.rank() == 0 && !images.empty()) {
    const fs::path dir = s.output / "samples" / ("step_" + std::to_string(step));
    write_pngs(dir, images, r, model, std::to_string(step));
    log.info("validation at step " + std::to_string(step) + ": " + std::to_string(images.size()) + " images in " +
             dir.string() + " (" + util::format_with("%.1f", watch.seconds()) + " s)" +
             (cut ? "; cut short by a preemption request" : ""));
  } else if (comm.rank() == 0) {
    log.info("validation at step " + std::to_string(step) + ": 0 images, cut short by a preemption request");
  }
  const bool compared = last && v.compare_base && !cut &&
                        draw_base_comparison(pipe, r, images, s, model, step, log, signals, comm);
  if (compared_with_base) *compared_with_base = compared;
  if (comm.rank() != 0) return {};
  std::vector<SampleImage> samples;
  for (const auto& img : images) {
    samples.push_back({step, static_cast<std::int64_t>(img.prompt_index), img.image_index, r.prompts[img.prompt_index],
                       img.seed, img.rgb});
  }
  return samples;
}

}  // namespace sdxl::train
