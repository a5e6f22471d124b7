#include "sdxl_dreambooth/model/model_location.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/util/json_error.h"
#include "sdxl_dreambooth/util/regular_file.h"
#include "sdxl_dreambooth/util/strings.h"

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>

namespace fs = std::filesystem;

namespace sdxl::model {

namespace {

bool looks_like_hub_id(const std::string& spec) {
  // ORG/NAME: exactly one slash, no leading '.', '/' or '~'.
  if (spec.empty() || spec[0] == '.' || spec[0] == '/' || spec[0] == '~') return false;
  return std::count(spec.begin(), spec.end(), '/') == 1 && spec.back() != '/';
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

std::string read_text(const fs::path& p) {
  util::require_regular_file(p.string());
  std::ifstream in(p);
  std::string s;
  std::getline(in, s);
  return util::trim(s);
}

}  // namespace

std::vector<fs::path> hf_cache_roots() {
  std::vector<fs::path> roots;
  auto add = [&](const fs::path& p) {
    if (!p.empty() && std::find(roots.begin(), roots.end(), p) == roots.end()) roots.push_back(p);
  };
  if (!env("HF_HUB_CACHE").empty()) add(env("HF_HUB_CACHE"));
  if (!env("HUGGINGFACE_HUB_CACHE").empty()) add(env("HUGGINGFACE_HUB_CACHE"));
  if (!env("HF_HOME").empty()) add(fs::path(env("HF_HOME")) / "hub");
  if (!env("XDG_CACHE_HOME").empty()) add(fs::path(env("XDG_CACHE_HOME")) / "huggingface" / "hub");
  if (!env("HOME").empty()) add(fs::path(env("HOME")) / ".cache" / "huggingface" / "hub");
  return roots;
}

fs::path resolve_model_dir(const std::string& spec, const std::string& revision) {
  std::vector<std::string> looked;
  if (fs::is_directory(spec)) return fs::path(spec);
  if (fs::is_regular_file(spec)) {
    throw Error("model " + util::quoted(spec) + " is a file, not a diffusers pipeline folder",
                "give the folder that holds model_index.json (unet/, vae/, text_encoder/, ...); a single-file "
                "checkpoint is not read");
  }
  looked.push_back(spec + " (as a folder)");
  if (looks_like_hub_id(spec)) {
    const auto slash = spec.find('/');
    const std::string repo_dir = "models--" + spec.substr(0, slash) + "--" + spec.substr(slash + 1);
    for (const fs::path& root : hf_cache_roots()) {
      const fs::path repo = root / repo_dir;
      const fs::path ref = repo / "refs" / revision;
      if (fs::is_regular_file(ref)) {
        const std::string hash = read_text(ref);
        const fs::path snap = repo / "snapshots" / hash;
        if (!hash.empty() && fs::is_directory(snap)) return snap;
        looked.push_back(ref.string() + " -> " + snap.string() + " (snapshot missing)");
        continue;
      }
      looked.push_back(ref.string());
      const fs::path direct = repo / "snapshots" / revision;  // a commit hash given as revision
      if (fs::is_directory(direct)) return direct;
      looked.push_back(direct.string());
    }
  }
  throw Error("model '" + spec + "' not found; looked in: " + util::join(looked, ", "),
              "give a local diffusers folder, or download the model once on a machine with network "
              "(huggingface-cli download " + spec + ") into a cache these nodes share, and set HF_HOME");
}

PipelineFolder open_pipeline(const std::string& spec, const std::string& revision) {
  PipelineFolder p;
  p.spec = spec;
  p.root = resolve_model_dir(spec, revision);
  const fs::path index = p.root / "model_index.json";
  if (!fs::is_regular_file(index)) {
    throw Error("'" + p.root.string() + "' is not a diffusers pipeline folder: no model_index.json",
                "model.pretrained must be a whole SDXL pipeline (model_index.json, unet/, vae/, text_encoder/, ...)");
  }
  nlohmann::json j;
  try {
    util::require_regular_file(index.string());
    std::ifstream in(index);
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error("'" + index.string() + "' is not valid JSON: " + util::json_problem(e));
  }
  if (!j.is_object()) {
    throw Error("'" + index.string() + "': expected a JSON object ({\"_class_name\": ...}), found " +
                std::string(j.type_name()));
  }
  const auto name = j.find("_class_name");
  if (name == j.end() || !name->is_string()) {
    throw Error("'" + index.string() + "': " + (name == j.end() ? "no _class_name" : "_class_name is not a string") +
                    "; expected \"_class_name\": \"StableDiffusionXLPipeline\"",
                "this program trains SDXL; SD 1.x/2.x pipelines are not supported");
  }
  const std::string cls = name->get<std::string>();
  if (cls != "StableDiffusionXLPipeline" && cls != "StableDiffusionXLImg2ImgPipeline") {
    throw Error("'" + index.string() + "': _class_name is " + util::quoted(cls) + ", expected StableDiffusionXLPipeline",
                "this program trains SDXL; SD 1.x/2.x pipelines are not supported");
  }
  for (const char* c : {"unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler"}) {
    if (!fs::is_directory(p.root / c)) {
      throw Error("pipeline '" + p.root.string() + "' lacks the component folder '" + c + "/'");
    }
  }
  return p;
}

fs::path resolve_component_dir(const std::string& spec, const std::string& revision, const std::string& component) {
  const fs::path dir = resolve_model_dir(spec, revision);
  if (fs::is_regular_file(dir / "config.json")) return dir;
  if (fs::is_regular_file(dir / component / "config.json")) return dir / component;
  throw Error("'" + dir.string() + "' holds neither a " + component + " component (config.json) nor a pipeline with a " +
              component + "/ folder");
}

}  // namespace sdxl::model
