#include "sdxl_dreambooth/train/class_images.h"

#include "sdxl_dreambooth/data/image_folder.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/pipeline/generation_batches.h"
#include "sdxl_dreambooth/pipeline/image_png.h"
#include "sdxl_dreambooth/train/data_order.h"
#include "sdxl_dreambooth/train/training_setup.h"
#include "sdxl_dreambooth/util/strings.h"

#include <cstdio>
#include <filesystem>
#include <optional>

namespace fs = std::filesystem;

namespace sdxl::train {

namespace {

// One batch drawn and each image written at once (an interrupted run keeps them).
void write_batch(pipeline::SdxlPipeline& pipe, const pipeline::GenerationRequest& r,
                 const std::vector<pipeline::ImageRef>& batch, std::int64_t existing, std::int64_t missing,
                 const std::string& model, const std::string& dir, const Logger& log) {
  for (const auto& img : pipe.generate(r, batch)) {
    const std::int64_t k = img.image_index;
    char name[32];
    std::snprintf(name, sizeof name, "class-%05lld.png", static_cast<long long>(existing + k));
    const fs::path path = fs::path(dir) / name;
    pipeline::write_image_png(path.string(), img,
                              {{"prompt", r.prompts.front()}, {"seed", std::to_string(img.seed)},
                               {"steps", std::to_string(r.steps)}, {"model", model},
                               {"software", "sdxl-dreambooth class image"}});
    log.info_all_ranks("class image " + std::to_string(k + 1) + "/" + std::to_string(missing) + ": " +
                       path.string());
  }
}

}  // namespace

void ensure_class_images(pipeline::SdxlPipeline& pipe, const config::RunConfig& cfg,
                         const config::ResolvedSubset& subset, std::size_t subset_index, const RunSettings& s,
                         const Logger& log, dist::HostCollectives& comm, const PreemptionSignals& signals) {
  const std::string dir = *subset.class_dir;
  const std::string prompt = *subset.class_prompt;
  const std::int64_t wanted = subset.num_class_images;
  const std::string key = subset.key + ".class_dir";
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(key + ": cannot create " + util::quoted(dir) + ": " + ec.message());
  // Every rank decides from rank 0's count, so all take the same branch.
  std::int64_t existing = 0;
  if (comm.rank() == 0) existing = static_cast<std::int64_t>(data::list_image_files(dir, key).size());
  existing = static_cast<std::int64_t>(comm.all_reduce_max(static_cast<double>(existing), "class image count"));
  if (existing >= wanted) return;
  const std::int64_t missing = wanted - existing;
  log.info("prior preservation: generating " + std::to_string(missing) + " class images for " + util::quoted(prompt) +
           " into " + dir);
  // prior.generation_precision other than the training one: a second copy of the base model in
  // that precision while they are drawn, as diffusers' script loads one.
  std::optional<pipeline::SdxlPipeline> own;
  if (s.class_image_dtype != s.dtype) {
    log.info("loading the base model in " + std::string(c10::toString(s.class_image_dtype)) +
             " to draw them (prior.generation_precision)");
    own.emplace(pipeline::SdxlPipeline::load(base_model_options(cfg.model, s.class_image_dtype, s.device)));
  }
  pipeline::SdxlPipeline& drawer = own ? *own : pipe;
  pipeline::GenerationRequest r;
  r.prompts = {prompt};
  r.steps = cfg.prior.sample_steps;
  r.guidance_scale = 5.0;
  // Subset 0 draws what a run without subsets draws; the others their own seeds.
  const std::uint64_t seed = derive_seed(s.seed, kClassImageStream);
  r.seed = (subset_index == 0 ? seed : derive_seed(seed, subset_index)) & 0xffffffffu;
  // At the subset's size: its class images train beside its instance images.
  r.width = r.height = static_cast<int>(subset.resolution);
  r.images_per_prompt = missing;
  r.scheduler = cfg.validation.scheduler;
  r.batch_size = cfg.prior.sample_batch_size;
  const auto batches = pipeline::plan_batches(r);
  const auto world = static_cast<std::size_t>(comm.world_size());
  for (std::size_t round = 0; round * world < batches.size(); ++round) {
    const std::size_t j = round * world + static_cast<std::size_t>(comm.rank());
    if (j < batches.size()) write_batch(drawer, r, batches[j], existing, missing, cfg.model.pretrained, dir, log);
    if (comm.all_reduce_max(signals.requested() ? 1.0 : 0.0, "preemption check between class-image batches") > 0) {
      throw PreemptedBeforeTraining{};
    }
  }
  comm.barrier("end of class-image generation");
}

}  // namespace sdxl::train
