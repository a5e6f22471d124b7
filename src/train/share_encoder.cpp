#include "sdxl_dreambooth/train/share_encoder.h"

#include "sdxl_dreambooth/data/image_decoder.h"
#include "sdxl_dreambooth/data/preprocess.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/model/model_fingerprint.h"
#include "sdxl_dreambooth/train/data_order.h"
#include "sdxl_dreambooth/util/sha256.h"

#include <algorithm>
#include <optional>
#include <random>

namespace sdxl::train {
namespace {

// An image that cannot be read is an Error, or with data.skip_bad_images a warning and
// nothing.
template <typename F>
auto read_or_skip(const std::string& path, bool skip_bad_images, const Logger& log, F&& read)
    -> std::optional<decltype(read())> {
  try {
    return read();
  } catch (const Error& e) {
    if (!skip_bad_images) {
      throw Error(e.what(), "set data.skip_bad_images = true to skip unreadable images with a warning");
    }
    log.warn(std::string("skipping ") + e.what());
    return std::nullopt;
  }
}

// SDXL's micro-conditioning: original height and width, crop top and left, target size.
torch::Tensor sdxl_time_ids(const data::PreprocessedImage& p) {
  return torch::tensor({static_cast<float>(p.original_size_hw[0]), static_cast<float>(p.original_size_hw[1]),
                        static_cast<float>(p.crop_top_left_yx[0]), static_cast<float>(p.crop_top_left_yx[1]),
                        static_cast<float>(p.pixels.size(1)), static_cast<float>(p.pixels.size(2))});
}

}  // namespace

ShareEncoder::ShareEncoder(const ImageSetOptions& o, nn::AutoencoderKL& vae, const torch::Device& device,
                           LatentCache* cache, std::string cache_key, const Logger& log, int encode_batch)
    : o_(o),
      vae_(vae),
      device_(device),
      cache_(cache),
      cache_key_(std::move(cache_key)),
      log_(log),
      batch_(encode_batch),
      channels_(vae->config().latent_channels) {}

std::string ShareEncoder::entry_key(const std::string& content, std::size_t index, int variant) const {
  const bool random = o_.random_flip || !o_.center_crop;
  // Without random draws every repeat is the same example: the image's content alone.
  const std::string draws = random ? std::to_string(o_.augment_seed) + ":" + std::to_string(index) + ":" +
                                         std::to_string(variant)
                                   : "-";
  const std::string variant_text = o_.cache_variant.empty() ? std::string() : "|" + o_.cache_variant;
  return util::sha256_hex(cache_key_ + "|" + content + "|" + draws + variant_text);
}

std::size_t ShareEncoder::slot(std::size_t bucket, std::size_t file) {
  LocalShare& share = shares_[bucket];
  share.means.emplace_back();
  share.stds.emplace_back();
  share.time_ids.emplace_back();
  share.files.push_back(static_cast<std::int64_t>(file));
  if (cache_) share.keys.emplace_back();
  return share.files.size() - 1;
}

bool ShareEncoder::add_file(const data::ImageFile& file, std::size_t index, int variants) {
  std::vector<std::string> keys(static_cast<std::size_t>(variants));
  std::vector<std::optional<CachedLatent>> cached(keys.size());
  if (cache_) {
    const auto content = read_or_skip(file.path, o_.skip_bad_images, log_, [&] { return model::sha256_file(file.path); });
    if (!content) return false;
    for (int v = 0; v < variants; ++v) {
      keys[static_cast<std::size_t>(v)] = entry_key(*content, index, v);
      cached[static_cast<std::size_t>(v)] = cache_->find(keys[static_cast<std::size_t>(v)], channels_);
    }
  }
  std::optional<data::DecodedImage> decoded;
  for (int v = 0; v < variants; ++v) {
    if (o_.stopping && o_.stopping()) return true;  // preempted: the run ends at the next check
    const auto k = static_cast<std::size_t>(v);
    if (cached[k]) {
      const auto it = std::find(o_.buckets.begin(), o_.buckets.end(), cached[k]->bucket);
      const bool square = o_.buckets.empty() && cached[k]->bucket == data::BucketSize{o_.resolution, o_.resolution};
      if (square || it != o_.buckets.end()) {
        const std::size_t bucket = square ? 0 : static_cast<std::size_t>(it - o_.buckets.begin());
        const std::size_t s = slot(bucket, index);
        shares_[bucket].keys[s] = keys[k];
        shares_[bucket].time_ids[s] = cached[k]->time_ids;
        continue;
      }
    }
    if (!decoded) {
      decoded = read_or_skip(file.path, o_.skip_bad_images, log_, [&] { return data::decode_image_file(file.path); });
      if (!decoded) return false;
      const auto& img = decoded->image;
      if (o_.buckets.empty() && std::min(img.width, img.height) < o_.resolution) {
        log_.warn(file.path + " is " + std::to_string(img.width) + "x" + std::to_string(img.height) +
                  ", smaller than the training resolution " + std::to_string(o_.resolution) + "; it is upscaled");
      } else if (!o_.buckets.empty()) {
        const data::BucketSize& b = o_.buckets[data::nearest_bucket(o_.buckets, img.width, img.height)];
        if (img.width < b.width || img.height < b.height) {
          log_.warn(file.path + " is " + std::to_string(img.width) + "x" + std::to_string(img.height) +
                    ", smaller than its bucket " + b.name() + "; it is upscaled");
        }
      }
    }
    encode(decoded->image, index, v, keys[k]);
  }
  return true;
}

void ShareEncoder::encode(const data::RgbImage& img, std::size_t index, int variant, const std::string& key) {
  data::PreprocessOptions po;
  po.resolution = o_.resolution;
  po.center_crop = o_.center_crop;
  const std::size_t bucket = o_.buckets.empty() ? 0 : data::nearest_bucket(o_.buckets, img.width, img.height);
  if (!o_.buckets.empty()) po.bucket = o_.buckets[bucket];
  std::mt19937_64 rng(derive_seed(o_.augment_seed, (static_cast<std::uint64_t>(index) << 20) +
                                                       static_cast<std::uint64_t>(variant)));
  // diffusers: `random.random() < 0.5`; one draw per example.
  po.flip = o_.random_flip && (rng() >> 11) * 0x1.0p-53 < 0.5;
  const auto p = data::preprocess(img, po, rng);
  const std::size_t s = slot(bucket, index);
  shares_[bucket].time_ids[s] = sdxl_time_ids(p);
  if (cache_) shares_[bucket].keys[s] = key;
  auto& pending = pending_[bucket];
  pending.push_back({bucket, s, key, p.pixels});
  if (static_cast<int>(pending.size()) >= batch_) flush(bucket);
}

void ShareEncoder::flush(std::size_t bucket) {
  auto& pending = pending_[bucket];
  if (pending.empty()) return;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> pixels;
  for (const auto& p : pending) pixels.push_back(p.pixels);
  const auto dtype = vae_->decoder->conv_in->weight.scalar_type();
  const auto posterior = vae_->encode(torch::stack(pixels).to(device_, dtype));
  const torch::Tensor mean = posterior.mean.to(torch::kCPU, torch::kFloat);
  const torch::Tensor std = posterior.std.to(torch::kCPU, torch::kFloat);
  LocalShare& share = shares_[bucket];
  const data::BucketSize size = o_.buckets.empty() ? data::BucketSize{o_.resolution, o_.resolution} : o_.buckets[bucket];
  for (std::size_t j = 0; j < pending.size(); ++j) {
    const auto row = static_cast<std::int64_t>(j);
    if (cache_) {
      cache_->store(pending[j].key, {size, mean[row].clone(), std[row].clone(), share.time_ids[pending[j].slot]});
    } else {
      share.means[pending[j].slot] = mean[row];
      share.stds[pending[j].slot] = std[row];
    }
  }
  pending.clear();
}

std::map<std::size_t, LocalShare>& ShareEncoder::finish() {
  for (auto& [bucket, pending] : pending_) flush(bucket);
  if (cache_) cache_->flush();
  return shares_;
}

}  // namespace sdxl::train
