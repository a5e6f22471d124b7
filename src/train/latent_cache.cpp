#include "sdxl_dreambooth/train/latent_cache.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/io/durable_file.h"
#include "sdxl_dreambooth/train/training_data.h"
#include "sdxl_dreambooth/util/host_name.h"
#include "sdxl_dreambooth/util/sha256.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

namespace fs = std::filesystem;

namespace sdxl::train {
namespace {

constexpr const char* kFormat = "sdxl-dreambooth latent cache";
constexpr std::int64_t kVersion = 1;

torch::Tensor to_tensor(const io::H5Array& a) {
  if (a.type != io::H5Type::kFloat32) throw Error("not float32");
  torch::Tensor t = torch::empty(a.shape, torch::kFloat);
  std::memcpy(t.data_ptr(), a.bytes.data(), a.bytes.size());
  return t;
}

void write(io::H5Group& g, const std::string& name, const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kCPU, torch::kFloat).contiguous();
  g.write_array(name, io::H5Type::kFloat32, c.sizes().vec(), c.data_ptr());
}

// A name no other rank, process or later flush of this one uses; names sort by time.
std::string shard_name(int rank, std::int64_t counter) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  char stamp[32];
  std::snprintf(stamp, sizeof stamp, "%020lld", static_cast<long long>(ns));
  return std::string("shard-") + stamp + "-" + util::host_name() + "-p" + std::to_string(::getpid()) + "-r" +
         std::to_string(rank) + "-" + std::to_string(counter) + ".h5";
}

}  // namespace

std::string latent_cache_key(const config::RunConfig& cfg, const RunSettings& s,
                             const model::ModelFingerprint& model, torch::Dtype vae_dtype) {
  std::string text = "sdxl-dreambooth latents v1\n";
  for (const auto& f : model.files) text += f.sha256 + " " + f.file + "\n";
  text += "resolution " + std::to_string(s.resolution) + "\ncenter_crop " + std::to_string(cfg.data.center_crop) +
          "\nrandom_flip " + std::to_string(cfg.data.random_flip) + "\nvae_dtype " + c10::toString(vae_dtype) + "\n";
  if (cfg.data.bucketing) {
    text += "buckets";
    for (const auto& b : training_buckets(cfg.data, s.resolution)) text += " " + b.name();
    text += "\n";
  }
  return util::sha256_hex(text).substr(0, 32);
}

LatentCache::LatentCache(fs::path dir, int rank, const Logger& log) : dir_(std::move(dir)), rank_(rank), log_(log) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec || !fs::is_directory(dir_)) {
    throw UsageError("data.cache_dir: cannot create the folder " + dir_.string() + ": " +
                     (ec ? ec.message() : std::string("a file of that name is in the way")));
  }
  index_new_shards(true);
}

void LatentCache::refresh() { index_new_shards(false); }

void LatentCache::index_new_shards(bool report) {
  std::error_code ec;
  std::vector<fs::path> found;
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("shard-", 0) != 0 || e.path().extension() != ".h5") continue;
    if (std::find(shards_.begin(), shards_.end(), e.path()) == shards_.end()) found.push_back(e.path());
  }
  // Oldest first (names start with the time): a newer copy of an entry wins.
  std::sort(found.begin(), found.end());
  const std::size_t first = shards_.size();
  shards_.insert(shards_.end(), found.begin(), found.end());
  for (std::size_t k = first; k < shards_.size(); ++k) {
    try {
      const io::H5Group& root = shard(k).root();
      if (!root.has_attr("format") || root.attr_string("format") != kFormat) throw Error("not a latent cache shard");
      if (root.attr_int("version") != kVersion) throw Error("cache format version " + std::to_string(root.attr_int("version")));
      if (root.has("entries")) {
        for (const auto& key : root.open_group("entries").children()) index_[key] = k;
      }
      if (root.has("prompts")) {
        for (const auto& key : root.open_group("prompts").children()) prompt_index_[key] = k;
      }
    } catch (const Error& e) {
      if (report) {
        log_.warn("data.cache_dir: ignoring " + shards_[k].string() + " (" + e.what() +
                  "); entries only it held are encoded again; delete the file to silence this");
      }
      open_.erase(k);
    }
  }
}

io::H5File& LatentCache::shard(std::size_t k) {
  auto it = open_.find(k);
  if (it != open_.end()) return it->second;
  // A bounded number of open files: HDF5 keeps a metadata cache per file.
  while (open_.size() >= kOpenShards && !open_order_.empty()) {
    open_.erase(open_order_.front());
    open_order_.erase(open_order_.begin());
  }
  open_order_.push_back(k);
  return open_.emplace(k, io::H5File::open_read_only(shards_[k].string())).first->second;
}

CachedLatent LatentCache::load(const std::string& key, std::size_t k, std::int64_t channels) {
  const io::H5Group entry = shard(k).root().open_group("entries").open_group(key);
  CachedLatent c;
  c.bucket = {static_cast<int>(entry.attr_int("width")), static_cast<int>(entry.attr_int("height"))};
  c.mean = to_tensor(entry.read_array("mean"));
  c.std = to_tensor(entry.read_array("std"));
  c.time_ids = to_tensor(entry.read_array("time_ids"));
  const std::vector<std::int64_t> shape{channels, c.bucket.height / 8, c.bucket.width / 8};
  if (c.mean.sizes().vec() != shape || c.std.sizes().vec() != shape || c.time_ids.numel() != 6) {
    throw Error("shapes do not fit a " + c.bucket.name() + " image");
  }
  if (!torch::isfinite(c.mean).all().item<bool>() || !torch::isfinite(c.std).all().item<bool>() ||
      (c.std < 0).any().item<bool>()) {
    throw Error("non-finite or negative values");
  }
  return c;
}

CachedPrompt LatentCache::load_prompt(const std::string& key, std::size_t k) {
  const io::H5Group entry = shard(k).root().open_group("prompts").open_group(key);
  CachedPrompt c{to_tensor(entry.read_array("embeds")), to_tensor(entry.read_array("pooled"))};
  if (c.embeds.dim() != 2 || c.pooled.dim() != 1) throw Error("not [tokens, features] and [features]");
  if (!torch::isfinite(c.embeds).all().item<bool>() || !torch::isfinite(c.pooled).all().item<bool>()) {
    throw Error("non-finite values");
  }
  return c;
}

std::optional<CachedLatent> LatentCache::find(const std::string& key, std::int64_t channels) {
  auto it = index_.find(key);
  if (it == index_.end()) {
    ++misses_;
    return std::nullopt;
  }
  try {
    CachedLatent c = load(key, it->second, channels);
    ++hits_;
    return c;
  } catch (const Error& e) {
    log_.warn("data.cache_dir: entry " + key.substr(0, 16) + " in " + shards_[it->second].string() +
              " is damaged (" + e.what() + "): encoding it again");
    index_.erase(it);
    ++rejected_;
    ++misses_;
    return std::nullopt;
  }
}

std::optional<CachedPrompt> LatentCache::find_prompt(const std::string& key) {
  auto it = prompt_index_.find(key);
  if (it == prompt_index_.end()) return std::nullopt;
  try {
    return load_prompt(key, it->second);
  } catch (const Error& e) {
    log_.warn("data.cache_dir: prompt entry " + key.substr(0, 16) + " in " + shards_[it->second].string() +
              " is damaged (" + e.what() + "): encoding it again");
    prompt_index_.erase(it);
    return std::nullopt;
  }
}

CachedLatent LatentCache::read(const std::string& key, std::int64_t channels) {
  auto it = index_.find(key);
  if (it == index_.end()) throw Error("data.cache_dir: entry " + key + " is missing from " + dir_.string());
  try {
    return load(key, it->second, channels);
  } catch (const Error& e) {
    throw Error("data.cache_dir: entry " + key + " in " + shards_[it->second].string() + " became unreadable during "
                "the run (" + e.what() + ")", "rerun: the damaged entry is then encoded again");
  }
}

CachedPrompt LatentCache::read_prompt(const std::string& key) {
  auto it = prompt_index_.find(key);
  if (it == prompt_index_.end()) throw Error("data.cache_dir: prompt entry " + key + " is missing from " + dir_.string());
  try {
    return load_prompt(key, it->second);
  } catch (const Error& e) {
    throw Error("data.cache_dir: prompt entry " + key + " in " + shards_[it->second].string() +
                " became unreadable during the run (" + e.what() + ")", "rerun: the damaged entry is then encoded again");
  }
}

void LatentCache::store(const std::string& key, const CachedLatent& entry) {
  pending_.emplace_back(key, entry);
  if (pending_.size() + pending_prompts_.size() >= kShardEntries) flush();
}

void LatentCache::store_prompt(const std::string& key, const CachedPrompt& entry) {
  pending_prompts_.emplace_back(key, entry);
  if (pending_.size() + pending_prompts_.size() >= kShardEntries) flush();
}

void LatentCache::flush() {
  if (pending_.empty() && pending_prompts_.empty()) return;
  const fs::path path = dir_ / shard_name(rank_, written_++);
  const std::string tmp = path.string() + ".tmp";
  try {
    io::H5File f = io::H5File::create(tmp);
    f.root().set_attr("format", kFormat);
    f.root().set_attr("version", kVersion);
    {
      io::H5Group entries = f.root().create_group("entries");
      for (const auto& [key, e] : pending_) {
        io::H5Group g = entries.create_group(key);
        g.set_attr("width", static_cast<std::int64_t>(e.bucket.width));
        g.set_attr("height", static_cast<std::int64_t>(e.bucket.height));
        write(g, "mean", e.mean);
        write(g, "std", e.std);
        write(g, "time_ids", e.time_ids);
      }
      io::H5Group prompts = f.root().create_group("prompts");
      for (const auto& [key, e] : pending_prompts_) {
        io::H5Group g = prompts.create_group(key);
        write(g, "embeds", e.embeds);
        write(g, "pooled", e.pooled);
      }
    }  // every group closed before the file
    f.close();
    io::commit_file(tmp, path.string());
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
  pending_.clear();
  pending_prompts_.clear();
}

}  // namespace sdxl::train
