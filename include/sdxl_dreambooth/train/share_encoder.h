// One rank's share of an image set turned into VAE posteriors: each file decoded, put in its
// aspect-ratio bucket, preprocessed once per example (every repeat with random flips or crops)
// and encoded in chunks per bucket; with data.cache_dir, examples found in the latent cache are
// taken from it, the file is not even decoded when all of its examples are there, and what is
// encoded is stored. An example's flip and crop come from its own stream (the set's seed, the
// file's place in the listing, the repeat), so they do not depend on the rank count and a cache
// entry is the same whoever encoded it.
#pragma once

#include "sdxl_dreambooth/data/image_decoder.h"
#include "sdxl_dreambooth/data/image_folder.h"
#include "sdxl_dreambooth/nn/autoencoder_kl.h"
#include "sdxl_dreambooth/train/latent_cache.h"
#include "sdxl_dreambooth/train/training_data.h"
#include "sdxl_dreambooth/util/logger.h"

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace sdxl::train {

// One rank's examples of one bucket, in the order they were added. With a cache only their
// entry keys are kept (training reads the latents from the cache), not the latents.
struct LocalShare {
  std::vector<torch::Tensor> means, stds, time_ids;  // per example: [C, h, w], [C, h, w], [6]
  std::vector<std::int64_t> files;                   // per example: index into the file list
  std::vector<std::string> keys;                     // per example with a cache
};

class ShareEncoder {
 public:
  // `cache` may be null (no data.cache_dir); `cache_key` names the set's settings in entry keys.
  ShareEncoder(const ImageSetOptions& options, nn::AutoencoderKL& vae, const torch::Device& device,
               LatentCache* cache, std::string cache_key, const Logger& log, int encode_batch);

  // File `index` of the listing with its `variants` examples. False when it is unreadable and
  // data.skip_bad_images skips it (else an Error names it).
  bool add_file(const data::ImageFile& file, std::size_t index, int variants);
  // Encodes what is pending and writes the cache's last shard; the shares by bucket index.
  std::map<std::size_t, LocalShare>& finish();

 private:
  struct Pending {
    std::size_t bucket, slot;
    std::string key;  // cache entry, empty without a cache
    torch::Tensor pixels;
  };
  std::string entry_key(const std::string& content, std::size_t index, int variant) const;
  std::size_t slot(std::size_t bucket, std::size_t file);
  void encode(const data::RgbImage& img, std::size_t index, int variant, const std::string& key);
  void flush(std::size_t bucket);

  const ImageSetOptions& o_;
  nn::AutoencoderKL& vae_;
  torch::Device device_;
  LatentCache* cache_;
  std::string cache_key_;
  const Logger& log_;
  int batch_;
  std::int64_t channels_;
  std::map<std::size_t, LocalShare> shares_;
  std::map<std::size_t, std::vector<Pending>> pending_;
};

}  // namespace sdxl::train
