#include "sdxl_dreambooth/model/weight_source.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/io/safetensors_torch.h"
#include "sdxl_dreambooth/util/json_error.h"
#include "sdxl_dreambooth/util/regular_file.h"
#include "sdxl_dreambooth/util/strings.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <set>

namespace fs = std::filesystem;

namespace sdxl::model {

namespace {

nlohmann::json read_json(const fs::path& path) {
  util::require_regular_file(path.string());
  std::ifstream in(path);
  if (!in) throw_errno("open", path.string());
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error("'" + path.string() + "' is not valid JSON: " + util::json_problem(e));
  }
}

}  // namespace

WeightSource WeightSource::open_file(const fs::path& path) {
  WeightSource ws;
  ws.description_ = path.string();
  if (util::ends_with(path.string(), ".index.json")) {
    const nlohmann::json index = read_json(path);
    if (!index.contains("weight_map") || !index["weight_map"].is_object()) {
      throw Error("shard index '" + path.string() + "' has no 'weight_map' object");
    }
    std::map<std::string, std::vector<std::string>> by_file;
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      if (!it.value().is_string()) throw Error("shard index '" + path.string() + "': weight_map['" + it.key() + "'] is not a file name");
      const std::string shard = it.value().get<std::string>();
      if (shard.find('/') != std::string::npos || shard == ".." ) {
        throw Error("shard index '" + path.string() + "': shard name '" + shard + "' must be a file beside the index");
      }
      by_file[shard].push_back(it.key());
    }
    for (const auto& [shard, names] : by_file) ws.add_file(path.parent_path() / shard, &names);
  } else {
    ws.add_file(path, nullptr);
  }
  return ws;
}

void WeightSource::add_file(const fs::path& path, const std::vector<std::string>* expected_names) {
  auto file = io::SafetensorsFile::open(path.string());
  const std::size_t idx = files_.size();
  files_.push_back(file);
  for (const auto& t : file->tensors()) {
    if (!where_.emplace(t.name, idx).second) {
      throw Error("tensor '" + t.name + "' is stored twice: in '" + files_[where_[t.name]]->path() + "' and '" +
                  path.string() + "'");
    }
  }
  if (expected_names) {
    for (const auto& n : *expected_names) {
      if (!file->find(n)) throw Error("shard '" + path.string() + "' lacks tensor '" + n + "' that its index lists");
    }
  }
}

namespace {

std::vector<std::string> component_candidates(const std::optional<std::string>& variant) {
  std::vector<std::string> candidates;
  for (const std::string base : {"diffusion_pytorch_model", "model"}) {
    if (variant) {
      candidates.push_back(base + "." + *variant + ".safetensors");
      candidates.push_back(base + ".safetensors.index." + *variant + ".json");
      candidates.push_back(base + "." + *variant + ".safetensors.index.json");
    } else {
      candidates.push_back(base + ".safetensors");
      candidates.push_back(base + ".safetensors.index.json");
    }
  }
  return candidates;
}

}  // namespace

std::optional<fs::path> WeightSource::find_component_file(const fs::path& dir, const std::optional<std::string>& variant) {
  for (const auto& name : component_candidates(variant)) {
    if (fs::is_regular_file(dir / name)) return dir / name;
  }
  return std::nullopt;
}

WeightSource WeightSource::open_component(const fs::path& dir, const std::optional<std::string>& variant) {
  if (auto file = find_component_file(dir, variant)) {
    WeightSource ws = open_file(*file);
    ws.description_ = file->string();
    return ws;
  }
  const std::vector<std::string> candidates = component_candidates(variant);
  std::string hint = "looked for: " + util::join(candidates, ", ");
  for (const char* pickle : {"diffusion_pytorch_model.bin", "pytorch_model.bin"}) {
    if (fs::exists(dir / pickle)) {
      hint += "; found " + std::string(pickle) + ", a pickle file that is not read for safety: convert it to "
              "safetensors (diffusers' save_pretrained(safe_serialization=True))";
    }
  }
  if (variant) hint += "; without model.variant the full-precision files are loaded";
  throw Error("no " + std::string(variant ? "'" + *variant + "' variant " : "") + "safetensors weights in '" +
                  dir.string() + "'",
              hint);
}

std::vector<std::string> WeightSource::names() const {
  std::vector<std::string> out;
  for (const auto& [name, idx] : where_) out.push_back(name);
  return out;
}

const io::TensorInfo& WeightSource::info(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw Error("no tensor '" + name + "' in " + description_);
  return *files_[it->second]->find(name);
}

torch::Tensor WeightSource::tensor(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw Error("no tensor '" + name + "' in " + description_);
  const auto& file = files_[it->second];
  return io::tensor_view(file, *file->find(name));
}

const std::string& WeightSource::file_of(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw Error("no tensor '" + name + "' in " + description_);
  return files_[it->second]->path();
}

std::vector<std::string> WeightSource::files() const {
  std::vector<std::string> out;
  for (const auto& f : files_) out.push_back(f->path());
  return out;
}

std::uint64_t WeightSource::total_bytes() const {
  std::uint64_t n = 0;
  for (const auto& f : files_) n += f->file_size();
  return n;
}

}  // namespace sdxl::model
