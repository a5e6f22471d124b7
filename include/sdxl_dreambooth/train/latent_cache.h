// data.cache_dir: VAE posteriors of training images kept on the (shared) filesystem, so that a
// rerun, a requeued job or a run with other LoRA settings encodes nothing again.
//
// Layout: CACHE_DIR/<set key>/shard-*.h5. The set key is a SHA-256 over what makes two runs'
// latents the same: the base model's VAE weights (their SHA-256), the resolution, crops, flips,
// bucket settings and the precision the VAE ran in. Each entry is keyed by the image's content
// (SHA-256 of its bytes) and, with random flips or crops, the seed, the file's place in the
// listing and the repeat (which fix its draws). A shard is written by one rank, as a new file
// (NAME.tmp, then renamed) every kShardEntries entries and at the end, so ranks never write
// the same file and an interrupted encoding keeps what it finished. Entries hold the posterior
// mean and std (training draws a fresh sample each step, as diffusers does), the SDXL time ids
// and the bucket, each checksummed (Fletcher-32); a damaged or implausible entry is reported and
// encoded again, never trained on.
#pragma once

#include "sdxl_dreambooth/config/run_config.h"
#include "sdxl_dreambooth/data/buckets.h"
#include "sdxl_dreambooth/model/model_fingerprint.h"
#include "sdxl_dreambooth/train/run_settings.h"
#include "sdxl_dreambooth/io/hdf5_file.h"
#include "sdxl_dreambooth/util/logger.h"

#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sdxl::train {

struct CachedLatent {
  data::BucketSize bucket;  // the crop's size in pixels
  torch::Tensor mean, std;  // [C, H/8, W/8] float32, CPU
  torch::Tensor time_ids;   // [6] float32
};

// A prompt's embeddings (nn::PromptEmbeddings of one prompt), float32 on the CPU.
struct CachedPrompt {
  torch::Tensor embeds;  // [77, D]
  torch::Tensor pooled;  // [P]
};

// The set key: what makes two runs' latents the same (above), as 32 hex digits.
std::string latent_cache_key(const config::RunConfig& cfg, const RunSettings& settings,
                             const model::ModelFingerprint& model, torch::Dtype vae_dtype);

class LatentCache {
 public:
  static constexpr std::size_t kShardEntries = 256;
  static constexpr std::size_t kOpenShards = 4;  // files kept open for reading (HDF5 caches per file)

  // Opens (creating) `dir` and indexes its shards; a shard that cannot be read is reported and
  // left out (its entries are encoded again).
  LatentCache(std::filesystem::path dir, int rank, const Logger& log);
  LatentCache(const LatentCache&) = delete;
  LatentCache& operator=(const LatentCache&) = delete;

  // The entry, read and checked: its checksums, `channels` latent channels at its bucket's
  // size, finite values. A bad entry is logged and treated as missing.
  std::optional<CachedLatent> find(const std::string& key, std::int64_t channels);
  void store(const std::string& key, const CachedLatent& entry);
  // The same for prompt embeddings (kept under /prompts of the shards).
  std::optional<CachedPrompt> find_prompt(const std::string& key);
  void store_prompt(const std::string& key, const CachedPrompt& entry);
  // During training: the entry, or an Error naming it when it is missing or damaged.
  CachedLatent read(const std::string& key, std::int64_t channels);
  CachedPrompt read_prompt(const std::string& key);
  // Writes the pending entries as a new shard.
  void flush();
  // Indexes the shards written since (by every rank): what the steps then read.
  void refresh();

  std::int64_t hits() const { return hits_; }
  std::int64_t misses() const { return misses_; }
  std::int64_t rejected() const { return rejected_; }

 private:
  void index_new_shards(bool report);
  io::H5File& shard(std::size_t k);
  CachedLatent load(const std::string& key, std::size_t shard, std::int64_t channels);
  CachedPrompt load_prompt(const std::string& key, std::size_t shard);

  std::filesystem::path dir_;
  int rank_;
  const Logger& log_;
  std::vector<std::filesystem::path> shards_;
  std::map<std::size_t, io::H5File> open_;
  std::vector<std::size_t> open_order_;       // least recently opened first
  std::map<std::string, std::size_t> index_;  // entry key -> shard (the newest holding it)
  std::map<std::string, std::size_t> prompt_index_;
  std::vector<std::pair<std::string, CachedLatent>> pending_;
  std::vector<std::pair<std::string, CachedPrompt>> pending_prompts_;
  std::int64_t hits_ = 0, misses_ = 0, rejected_ = 0, written_ = 0;
};

}  // namespace sdxl::train
