#include "sdxl_dreambooth/train/preflight.h"

#include "sdxl_dreambooth/data/dataset_listing.h"
#include "sdxl_dreambooth/data/image_folder.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/model/model_location.h"
#include "sdxl_dreambooth/model/weight_source.h"
#include "sdxl_dreambooth/train/training_data.h"
#include "sdxl_dreambooth/util/strings.h"

#include <unistd.h>

#include <filesystem>

namespace fs = std::filesystem;

namespace sdxl::train {
namespace {

// A missing or malformed model is the config's fault: exit 2, naming the key.
template <typename F>
void as_config_error(const std::string& key, F&& check) {
  try {
    check();
  } catch (const UsageError&) {
    throw;
  } catch (const Error& e) {
    throw UsageError(key + ": " + e.what(), e.hint());
  }
}

// An existing writable folder, or a path whose nearest existing ancestor is one (the run
// creates the rest).
void check_writable_folder(const fs::path& folder, const std::string& key) {
  std::error_code ec;
  fs::path p = folder;
  while (!p.empty() && !fs::exists(p, ec)) p = p.parent_path();
  if (p.empty()) p = ".";
  if (!fs::is_directory(p, ec)) {
    throw UsageError(key + ": " + util::quoted(p.string()) + " is not a folder" +
                     (p == folder ? std::string() : " (needed for " + util::quoted(folder.string()) + ")"));
  }
  if (::access(p.c_str(), W_OK | X_OK) != 0) {
    throw UsageError(key + ": " + util::quoted(p.string()) + " is not writable by this user" +
                     (p == folder ? std::string() : " (needed to create " + util::quoted(folder.string()) + ")"));
  }
}

// A run's files inside the base model's folder would mix into the model.
void check_outside_model(const config::ModelConfig& model, const fs::path& output) {
  std::error_code ec;
  const fs::path model_dir = fs::weakly_canonical(model::resolve_model_dir(model.pretrained, model.revision), ec);
  const fs::path rel = fs::weakly_canonical(output, ec).lexically_relative(model_dir);
  if (!rel.empty() && *rel.begin() != "..") {
    throw UsageError("output.dir: " + util::quoted(output.string()) + " is inside the model folder " +
                     util::quoted(model_dir.string()), "give the run a folder of its own");
  }
}

void check_resume_target(const std::string& resume) {
  if (resume == "none" || resume == "latest") return;
  std::error_code ec;
  const auto status = fs::status(resume, ec);
  if (!fs::exists(status)) {
    const std::string near = util::nearest(resume, {"none", "latest"});
    throw UsageError("checkpoint.resume: " + util::quoted(resume) + " is neither \"none\", \"latest\" nor an existing "
                     "checkpoint file" + (near.empty() ? std::string() : " (did you mean \"" + near + "\"?)"));
  }
  if (fs::is_directory(status)) {
    throw UsageError("checkpoint.resume: " + util::quoted(resume) + " is a folder; give a checkpoint file "
                     "(checkpoint-N.h5) or \"latest\" (with checkpoint.dir set to that folder)");
  }
  if (::access(resume.c_str(), R_OK) != 0) {
    throw UsageError("checkpoint.resume: " + util::quoted(resume) + " is not readable by this user");
  }
}

}  // namespace

namespace {

// An existing class folder: a file named like an image that is not one is an error (or, with
// data.skip_bad_images, skipped and drawn anew); it may be read-only only when it holds enough
// images.
void check_class_folder(const config::ResolvedSubset& sub, const std::string& key, bool skip_bad_images) {
  const data::SortedImageFiles files = data::sort_out_image_files(*sub.class_dir, key);
  if (!files.not_images.empty() && !skip_bad_images) {
    const std::size_t more = files.not_images.size() - 1;
    throw UsageError(key + ": " + util::quoted(files.not_images.front()) +
                         " is named like an image but is not a JPEG, PNG or WebP file" +
                         (more ? " (and " + std::to_string(more) + " more)" : std::string()),
                     "remove it, or set data.skip_bad_images = true to skip it (a class image is drawn in its place)");
  }
  const auto have = static_cast<std::int64_t>(files.images.size());
  if (have < sub.num_class_images) {
    check_writable_folder(*sub.class_dir, key + " (" + std::to_string(sub.num_class_images - have) +
                                              " class images to draw)");
  }
}

// A subset's whole listing (metadata rows, kohya folders, captions): its errors are the
// config's. An existing class folder may be read-only when it holds enough images; a missing
// one is created.
void check_subset(const config::ResolvedSubset& sub, const config::DataConfig& data, bool prior) {
  data::list_dataset(sub.instance_dir, sub.key + ".instance_dir", dataset_options(sub, data.skip_bad_images));
  if (!prior || !sub.class_dir) return;
  const std::string key = sub.key + ".class_dir";
  std::error_code ec;
  if (fs::exists(*sub.class_dir, ec)) {
    if (!fs::is_directory(*sub.class_dir, ec)) throw UsageError(key + ": " + util::quoted(*sub.class_dir) + " is not a folder");
    // Class images drawn into the instance folder would train as the subject, and the
    // subject's photos as the class.
    if (fs::equivalent(*sub.class_dir, sub.instance_dir, ec)) {
      throw UsageError(key + ": " + util::quoted(*sub.class_dir) + " is " + sub.key + ".instance_dir",
                       "give the class images a folder of their own (diffusers' --class_data_dir)");
    }
    check_class_folder(sub, key, data.skip_bad_images);
  } else {
    check_writable_folder(*sub.class_dir, key);
  }
}

// Class images drawn into any subset's instance folder would train as that subject.
void check_class_dirs_apart(const std::vector<config::ResolvedSubset>& subsets) {
  for (const config::ResolvedSubset& c : subsets) {
    for (const config::ResolvedSubset& i : subsets) {
      std::error_code ec;
      if (!c.class_dir || &c == &i || !fs::equivalent(*c.class_dir, i.instance_dir, ec)) continue;
      throw UsageError(c.key + ".class_dir: " + util::quoted(*c.class_dir) + " is " + i.key + ".instance_dir",
                       "give the class images a folder of their own (diffusers' --class_data_dir)");
    }
  }
}

}  // namespace

void check_run_inputs(const config::RunConfig& cfg, const RunSettings& s) {
  model::PipelineFolder folder;
  as_config_error("model.pretrained", [&] { folder = model::open_pipeline(cfg.model.pretrained, cfg.model.revision); });
  fs::path vae = folder.component("vae");
  if (cfg.model.vae) {
    as_config_error("model.vae", [&] { vae = model::resolve_component_dir(*cfg.model.vae, cfg.model.revision, "vae"); });
  }
  if (cfg.model.variant) {
    // As diffusers' script loads each component with variant=…: every one must have it.
    for (const fs::path& dir : {folder.component("unet"), vae, folder.component("text_encoder"),
                                folder.component("text_encoder_2")}) {
      if (!model::WeightSource::find_component_file(dir, cfg.model.variant)) {
        throw UsageError("model.variant = " + util::quoted(*cfg.model.variant) + ": " + util::quoted(dir.string()) +
                             " has no weights of that variant",
                         "remove model.variant to load the full-precision files");
      }
    }
  }
  const std::vector<config::ResolvedSubset> subsets = config::resolve_subsets(cfg.data);
  for (const config::ResolvedSubset& sub : subsets) check_subset(sub, cfg.data, cfg.prior.enabled);
  if (cfg.prior.enabled) check_class_dirs_apart(subsets);
  if (cfg.data.cache_dir) check_writable_folder(*cfg.data.cache_dir, "data.cache_dir");
  check_writable_folder(s.output, "output.dir");
  check_outside_model(cfg.model, s.output);
  check_writable_folder(s.checkpoint_dir, cfg.checkpoint.dir ? "checkpoint.dir" : "output.dir");
  if (cfg.logging.tensorboard) check_writable_folder(s.output / "logs", "logging.tensorboard");
  check_resume_target(cfg.checkpoint.resume);
}

}  // namespace sdxl::train
