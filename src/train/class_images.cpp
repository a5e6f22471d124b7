#include "sdxl_dreambooth/train/class_images.h"

#include "sdxl_dreambooth/data/image_folder.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/pipeline/generation_batches.h"
#include "sdxl_dreambooth/pipeline/image_png.h"
#include "sdxl_dreambooth/train/data_order.h"
#include "sdxl_dreambooth/train/training_setup.h"
#include "sdxl_dreambooth/util/strings.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <sstream>

namespace fs = std::filesystem;

namespace sdxl::train {

namespace {

std::string class_image_name(std::int64_t number) {
  char name[32];
  std::snprintf(name, sizeof name, "class-%05lld.png", static_cast<long long>(number));
  return name;
}

// The numbers of the images to draw: the first `missing` whose class-NNNNN.png the folder does
// not hold. A user's own class-00001.png is never overwritten, and a top-up (more
// num_class_images) or a run stopped during generation continues the numbering and with it the
// seeds (image N is drawn from seed + N), so no image repeats another.
std::vector<std::int64_t> free_numbers(const std::string& dir, std::int64_t missing) {
  std::vector<std::int64_t> out;
  for (std::int64_t n = 0; static_cast<std::int64_t>(out.size()) < missing; ++n) {
    std::error_code ec;
    // Anything of that name, a dangling link included, is the user's.
    if (!fs::exists(fs::symlink_status(fs::path(dir) / class_image_name(n), ec))) out.push_back(n);
  }
  return out;
}

// Rank 0's free numbers on every rank (a shared folder may look different on other nodes for a while).
std::vector<std::int64_t> agreed_free_numbers(const std::string& dir, std::int64_t missing,
                                              dist::HostCollectives& comm) {
  std::string text;
  if (comm.rank() == 0) {
    for (std::int64_t n : free_numbers(dir, missing)) text += std::to_string(n) + " ";
  }
  comm.broadcast(text, 0, "class image numbers");
  std::vector<std::int64_t> out;
  std::istringstream in(text);
  for (std::int64_t n; in >> n;) out.push_back(n);
  return out;
}

// One batch drawn and each image written at once (an interrupted run keeps them).
void write_batch(pipeline::SdxlPipeline& pipe, const pipeline::GenerationRequest& r,
                 const std::vector<pipeline::ImageRef>& batch, const std::vector<std::int64_t>& numbers,
                 const std::string& model, const std::string& dir, const Logger& log) {
  const auto images = pipe.generate(r, batch);
  pipeline::require_finite_images(images, r, "the base model overflows in prior.generation_precision");
  for (const auto& img : images) {
    const fs::path path = fs::path(dir) / class_image_name(img.image_index);
    pipeline::write_image_png(path.string(), img,
                              {{"prompt", r.prompts.front()}, {"seed", std::to_string(img.seed)},
                               {"steps", std::to_string(r.steps)}, {"model", model},
                               {"software", "sdxl-dreambooth class image"}});
    const auto nth = std::find(numbers.begin(), numbers.end(), img.image_index) - numbers.begin() + 1;
    log.info_all_ranks("class image " + std::to_string(nth) + "/" + std::to_string(numbers.size()) + ": " +
                       path.string());
  }
}

// The image numbers in batches of `batch_size`, in order: for a folder without class images,
// the batches plan_batches would make.
std::vector<std::vector<pipeline::ImageRef>> numbered_batches(const std::vector<std::int64_t>& numbers,
                                                              std::int64_t batch_size) {
  std::vector<std::vector<pipeline::ImageRef>> batches;
  for (std::int64_t n : numbers) {
    if (batches.empty() || static_cast<std::int64_t>(batches.back().size()) == batch_size) batches.emplace_back();
    batches.back().emplace_back(0, n);
  }
  return batches;
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
  if (comm.rank() == 0) existing = static_cast<std::int64_t>(data::sort_out_image_files(dir, key).images.size());
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
  const std::vector<std::int64_t> numbers = agreed_free_numbers(dir, missing, comm);
  r.images_per_prompt = numbers.back() + 1;  // image N draws from r.seed + N
  r.scheduler = cfg.validation.scheduler;
  r.batch_size = cfg.prior.sample_batch_size;
  const auto batches = numbered_batches(numbers, r.batch_size);
  const auto world = static_cast<std::size_t>(comm.world_size());
  for (std::size_t round = 0; round * world < batches.size(); ++round) {
    const std::size_t j = round * world + static_cast<std::size_t>(comm.rank());
    if (j < batches.size()) write_batch(drawer, r, batches[j], numbers, cfg.model.pretrained, dir, log);
    if (comm.all_reduce_max(signals.requested() ? 1.0 : 0.0, "preemption check between class-image batches") > 0) {
      throw PreemptedBeforeTraining{};
    }
  }
  comm.barrier("end of class-image generation");
}

}  // namespace sdxl::train
