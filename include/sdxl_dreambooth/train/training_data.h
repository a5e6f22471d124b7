// Everything a training step reads, computed once before training: each training image
// (every repeat and flip/crop draw) VAE-encoded to its posterior mean and std, its SDXL time
// ids, and the text embeddings of every distinct prompt. A step then draws a fresh latent
// sample per image (diffusers' semantics) without a VAE or text-encoder pass.
#pragma once

#include "sdxl_dreambooth/config/data_subsets.h"
#include "sdxl_dreambooth/config/run_config.h"
#include "sdxl_dreambooth/data/buckets.h"
#include "sdxl_dreambooth/data/dataset_listing.h"
#include "sdxl_dreambooth/data/image_folder.h"
#include "sdxl_dreambooth/dist/host_collectives.h"
#include "sdxl_dreambooth/nn/autoencoder_kl.h"
#include "sdxl_dreambooth/pipeline/sdxl_pipeline.h"
#include "sdxl_dreambooth/train/latent_cache.h"
#include "sdxl_dreambooth/train/prior_mix.h"
#include "sdxl_dreambooth/train/run_settings.h"
#include "sdxl_dreambooth/util/logger.h"

#include <torch/torch.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace sdxl::train {

struct ImageSetOptions {
  std::string dir;
  std::string key;     // config key of dir, for messages ("data.instance_dir")
  std::string prompt;  // used for images without a caption
  std::optional<std::string> caption_ext;
  std::string format = "folder";        // data.format for the instance images (data/dataset_listing.h)
  std::string caption_column = "text";  // imagefolder metadata
  int resolution = 1024;
  bool center_crop = false;
  bool random_flip = false;
  int repeats = 1;
  bool skip_bad_images = false;
  // Class folders: a file named like an image whose first bytes are none is no class image
  // (rank 0 drops it, with a warning, before the list is shared).
  bool only_image_files = false;
  std::uint64_t augment_seed = 0;  // the set's flips and random crops (train/share_encoder.h)
  // True once this rank was asked to stop (preemption): the rest of its share is skipped until
  // the next collective check ends the run.
  std::function<bool()> stopping;
  // data.bucketing: each image goes to its nearest bucket (data/buckets.h); empty: every image
  // is cropped to resolution².
  std::vector<data::BucketSize> buckets;
  // Added to the latent cache's entry keys when this set is encoded unlike the run's key says
  // (a subset's own resolution); empty otherwise, so existing entries keep their keys.
  std::string cache_variant;
};

// Encoded examples of one size (one aspect-ratio bucket). Rows of mean/std/time_ids are examples.
struct LatentGroup {
  data::BucketSize bucket;                // its size in pixels
  std::int64_t channels = 4;              // of the latents
  torch::Tensor mean, std;                // [N, C, H/8, W/8] float32 on the training device (no cache)
  std::vector<std::string> keys;          // with data.cache_dir: each example's cache entry instead
  torch::Tensor time_ids;                 // [N, 6] float32: original h, w, crop y, x, target h, w
  std::vector<std::size_t> prompt_index;  // per example, into PromptTable
  std::int64_t size() const { return time_ids.defined() ? time_ids.size(0) : 0; }
  // Posterior mean and std of `rows` on `device`: held ones, or read from `cache`.
  std::pair<torch::Tensor, torch::Tensor> posterior(const std::vector<std::int64_t>& rows, LatentCache* cache,
                                                    const torch::Device& device) const;
};

// The encoded examples of one folder: one group per bucket that holds any (bucket order), or
// one group without bucketing. Examples are numbered group after group.
struct EncodedImages {
  std::vector<LatentGroup> groups;
  std::size_t images_used = 0, images_skipped = 0;
  std::int64_t size() const;
  std::vector<std::int64_t> group_sizes() const;
  // The group and row of example `example`.
  std::pair<std::size_t, std::int64_t> locate(std::int64_t example) const;
};

struct PromptTable {
  std::vector<std::string> prompts;
  torch::Tensor prompt_embeds;    // [P, 77, D] on the training device, in the UNet's dtype (no cache)
  torch::Tensor pooled;           // [P, Dp]
  std::vector<std::string> keys;  // with data.cache_dir: each prompt's cache entry instead
  torch::Tensor ids_1, ids_2;     // [P, 77] int64 token ids of both tokenizers (text-encoder training)
  torch::Dtype dtype = torch::kFloat;
  torch::Device device = torch::kCPU;
  std::size_t add(const std::string& prompt);  // index, adding it if new
  // The embeddings and pooled embeddings of prompts `rows` (also on `device` as `rows_on_device`).
  std::pair<torch::Tensor, torch::Tensor> embeddings(const std::vector<std::int64_t>& rows,
                                                     const torch::Tensor& rows_on_device, LatentCache* cache) const;
};

// data.bucketing's bucket sizes at `resolution` (data.min/max_bucket_resolution default to a
// quarter and twice the resolution, in multiples of data.bucket_step).
std::vector<data::BucketSize> training_buckets(const config::DataConfig& data, int resolution);
// A subset's buckets at its resolution with its (or the inherited) bucket settings; empty when
// it does not bucket.
std::vector<data::BucketSize> subset_buckets(const config::ResolvedSubset& subset);

// How a subset's instance images are listed (data/dataset_listing.h).
data::DatasetOptions dataset_options(const config::ResolvedSubset& subset, bool skip_bad_images);

// Rank 0 lists the folder (and reads the captions) once and broadcasts the list, so N ranks
// do not scan a parallel filesystem N times; a listing error is thrown on every rank.
std::vector<data::ImageFile> list_images_collective(const ImageSetOptions& options, dist::HostCollectives& comm,
                                                    const Logger& log);

// Decodes, preprocesses (see data/preprocess.h) and VAE-encodes this rank's share of `files`
// (file i belongs to rank i mod world size) in chunks of `encode_batch` (train/share_encoder.h;
// with a `cache`, entries found there are not encoded again), then all-gathers the posteriors
// so every rank holds every example (rank-major order). Adds every file's prompt to `prompts`
// in file order (the same table on every rank). Throws UsageError when no rank has a usable
// image; a bad image is an Error naming it, or skipped with a warning when skip_bad_images is
// set. `between_rounds` (a collective preemption check) runs after every 8 files of the
// listing, as many times on any number of ranks.
EncodedImages encode_image_folder(const std::vector<data::ImageFile>& files, const ImageSetOptions& options,
                                  nn::AutoencoderKL& vae, PromptTable& prompts, const torch::Device& device,
                                  const Logger& log, dist::HostCollectives& comm,
                                  const std::function<void()>& between_rounds = {}, LatentCache* cache = nullptr,
                                  const std::string& cache_key = {}, int encode_batch = 4);

// Fills prompts.prompt_embeds/pooled through the pipeline's text encoders; warns about each
// prompt longer than CLIP reads. With a `cache` the ranks share the encoding (prompt i on rank
// i mod world, only those missing from the cache), store it there and keep only the keys.
// `token_ids` instead keeps only both tokenizers' ids, for per-step encoding.
void encode_prompts(PromptTable& prompts, pipeline::SdxlPipeline& pipe, torch::Dtype dtype, const Logger& log,
                    dist::HostCollectives& comm, LatentCache* cache, const std::string& cache_key, bool token_ids);

// What the steps draw from: the instance examples, the class examples (prior preservation)
// and the embeddings of their prompts.
struct TrainingData {
  EncodedImages instance;
  EncodedImages klass;  // empty without prior preservation
  PromptTable prompts;
  // data.caption_dropout > 0: the empty prompt's row in `prompts` (kohya trains dropped captions
  // on the encoded empty string).
  std::optional<std::size_t> empty_prompt;
  // data.cache_dir: where the steps read their examples' latents and prompt embeddings.
  std::shared_ptr<LatentCache> cache;
  // Where each subset's examples are (one subset without [[data.subsets]]). With paired prior
  // preservation instance examples are one group, subset after subset, and an instance row
  // is paired with a class row of its own subset.
  struct SubsetRows {
    std::int64_t instance_offset = 0, instance_count = 0;
    std::int64_t class_offset = 0, class_count = 0;
    std::size_t images = 0;
  };
  std::vector<SubsetRows> subsets;
  // The class row paired with dataset index `i` (its instance row is i mod the instance count):
  // a class example of the same subset, cycling through them as diffusers' dataset does.
  std::int64_t class_row(std::int64_t i) const;
  // Prior preservation with examples of several sizes: instance and class examples mixed in
  // groups by size (train/prior_mix.h); empty otherwise (class rows pair with instance rows).
  PriorMix mix;
  // diffusers: the dataset has max(instance, class) examples; class rows wrap around. Mixed:
  // every instance and class example.
  std::int64_t dataset_size() const {
    return mix.empty() ? std::max(instance.size(), klass.size()) : mix.size();
  }
  // Examples per group the data order draws each global batch from: the instance buckets, the
  // mixed groups, or the whole dataset in one group (paired prior preservation).
  std::vector<std::int64_t> order_groups() const {
    if (!mix.empty()) return mix.group_sizes();
    return klass.size() ? std::vector<std::int64_t>{dataset_size()} : instance.group_sizes();
  }
};

// Whether the text encoders encode every step's prompts (their LoRA or pivotal tuning trains,
// or data.shuffle_tags reorders captions), so they stay loaded and prompts keep their token ids.
bool text_encoders_run_each_step(const config::RunConfig& cfg);

// Encodes every subset's instance images (and class images with prior.enabled) and every
// prompt — with a `cache_key` (data.cache_dir; train/latent_cache.h) through the latent cache
// CACHE_DIR/<cache_key>/ — then
// frees what training no longer needs: the VAE encoder and, unless the text encoders train,
// the text encoders (the validation prompts are embedded first). Flips and crops draw from
// this rank's augmentation stream.
TrainingData encode_training_data(const config::RunConfig& cfg, const RunSettings& settings,
                                  pipeline::SdxlPipeline& pipe, const Logger& log, dist::HostCollectives& comm,
                                  const std::function<void()>& between_rounds = {},
                                  const std::string& cache_key = {}, const std::function<bool()>& stopping = {});

}  // namespace sdxl::train
