#include "sdxl_dreambooth/train/training_data.h"

#include "sdxl_dreambooth/config/data_subsets.h"
#include "sdxl_dreambooth/data/dataset_listing.h"
#include "sdxl_dreambooth/data/image_decoder.h"
#include "sdxl_dreambooth/data/image_folder.h"
#include "sdxl_dreambooth/data/preprocess.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/train/data_order.h"
#include "sdxl_dreambooth/train/share_encoder.h"
#include "sdxl_dreambooth/util/memory_usage.h"
#include "sdxl_dreambooth/util/sha256.h"
#include "sdxl_dreambooth/util/stopwatch.h"
#include "sdxl_dreambooth/util/strings.h"
#include "sdxl_dreambooth/util/to_device.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>

namespace fs = std::filesystem;

namespace sdxl::train {
namespace {

// Rank 0's text on every rank.
std::string broadcast_text(dist::HostCollectives& comm, const std::string& text, const char* what) {
  std::string bytes = comm.rank() == 0 ? text : std::string();
  comm.broadcast(bytes, 0, what);
  return bytes;
}

}  // namespace

std::size_t PromptTable::add(const std::string& prompt) {
  auto it = std::find(prompts.begin(), prompts.end(), prompt);
  if (it != prompts.end()) return static_cast<std::size_t>(it - prompts.begin());
  prompts.push_back(prompt);
  return prompts.size() - 1;
}

data::DatasetOptions dataset_options(const config::ResolvedSubset& subset, bool skip_bad_images) {
  data::DatasetOptions d;
  d.format = subset.format;
  d.caption_ext = subset.caption_ext;
  d.caption_column = subset.caption_column;
  d.skip_bad_rows = skip_bad_images;
  return d;
}

data::DatasetListing list_dataset(const ImageSetOptions& o) {
  data::DatasetOptions d;
  d.format = o.format;
  d.caption_ext = o.caption_ext;
  d.caption_column = o.caption_column;
  d.skip_bad_rows = o.skip_bad_images;
  return data::list_dataset(o.dir, o.key, d);
}

// Files named like images that are not (data.skip_bad_images; preflight refuses them
// otherwise) are no class images: they neither count nor take a place among num_class_images,
// just as ensure_class_images drew a replacement for each.
void drop_files_that_are_not_images(std::vector<data::ImageFile>& files, const std::string& key, const Logger& log) {
  const auto first_bad = std::stable_partition(files.begin(), files.end(), [](const data::ImageFile& f) {
    return !data::image_format_of_file(f.path).empty();
  });
  if (first_bad == files.end()) return;
  log.warn(key + ": skipping " + std::to_string(files.end() - first_bad) + " file(s) named like images that are " +
           "not JPEG, PNG or WebP (" + util::quoted(first_bad->path) + ")");
  files.erase(first_bad, files.end());
}

std::vector<data::ImageFile> list_images_collective(const ImageSetOptions& o, dist::HostCollectives& comm,
                                                    const Logger& log) {
  const util::Stopwatch watch;
  const int rank = comm.rank();
  nlohmann::json msg;
  if (rank == 0) {
    try {
      data::DatasetListing listing = list_dataset(o);
      for (const auto& w : listing.warnings) log.warn(w);
      if (o.only_image_files) drop_files_that_are_not_images(listing.files, o.key, log);
      msg["format"] = listing.format;
      msg["files"] = nlohmann::json::array();
      for (const auto& f : listing.files) {
        msg["files"].push_back({{"path", f.path},
                                {"caption", f.caption ? nlohmann::json(*f.caption) : nlohmann::json()},
                                {"repeats", f.repeats}});
      }
    } catch (const UsageError& e) {
      msg = {{"error", e.what()}, {"usage", true}, {"hint", e.hint()}};
    } catch (const Error& e) {
      msg = {{"error", e.what()}, {"usage", false}, {"hint", e.hint()}};
    }
  }
  // CBOR, not JSON text: paths are bytes, and a file name that is not UTF-8 must reach every
  // rank as it is.
  const std::vector<std::uint8_t> sent = rank == 0 ? nlohmann::json::to_cbor(msg) : std::vector<std::uint8_t>();
  const std::string received =
      broadcast_text(comm, std::string(sent.begin(), sent.end()), "broadcast of the image list");
  const auto reply = nlohmann::json::from_cbor(received.begin(), received.end());
  if (reply.contains("error")) {
    const std::string what = reply["error"], hint = reply["hint"];
    if (reply["usage"].get<bool>()) throw UsageError(what, hint);
    throw Error(what, hint);
  }
  std::vector<data::ImageFile> files;
  for (const auto& f : reply["files"]) {
    data::ImageFile file{f["path"].get<std::string>(), std::nullopt, f["repeats"].get<int>()};
    if (!f["caption"].is_null()) file.caption = f["caption"].get<std::string>();
    files.push_back(std::move(file));
  }
  log.info(o.key + ": " + std::to_string(files.size()) + " images listed" +
           (reply["format"] != "folder" ? " (" + reply["format"].get<std::string>() + " layout)" : std::string()) +
           " in " + util::format_with("%.2f", watch.seconds()) + " s");
  return files;
}

namespace {

// The summary line of an encoded image set, and a warning when captions were asked for and none
// were found.
void log_image_set(const ImageSetOptions& o, const EncodedImages& out, std::size_t captions, int world,
                   double seconds, const Logger& log) {
  if (o.caption_ext && captions == 0) {
    log.warn("data.caption_ext = " + util::quoted(*o.caption_ext) + ": no caption file beside any image in " +
             util::quoted(o.dir) + "; every image trains on the instance prompt");
  }
  const std::string at = o.buckets.empty() ? " encoded at " + std::to_string(o.resolution) + " px"
                                           : " encoded in " + std::to_string(out.groups.size()) + " buckets";
  log.info(o.key + ": " + std::to_string(out.images_used) + " images" +
           (out.images_skipped ? " (" + std::to_string(out.images_skipped) + " skipped)" : std::string()) +
           (captions ? ", " + std::to_string(captions) + " with captions" : std::string()) + ", " +
           std::to_string(out.size()) + " examples" + at +
           (world > 1 ? " by " + std::to_string(world) + " ranks" : std::string()) + " in " +
           util::format_with("%.1f", seconds) + " s (" +
           util::format_with("%.0f", static_cast<double>(out.images_used) / std::max(seconds, 1e-9)) + " images/s)");
}

// Without data.cache_dir every rank holds every example's posterior: refused as a configuration
// error when that cannot fit the memory the node has now.
void check_examples_fit(const std::vector<data::ImageFile>& files, const ImageSetOptions& o, std::int64_t channels) {
  double examples = 0;
  for (const auto& f : files) examples += static_cast<double>(o.repeats) * f.repeats;
  const double per_example = 2.0 * static_cast<double>(channels) * (o.resolution / 8.0) * (o.resolution / 8.0) * 4;
  const double available = static_cast<double>(util::available_memory_bytes());
  if (available <= 0 || examples * per_example <= available) return;
  throw UsageError(o.key + ": " + util::format_with("%.0f", examples) + " examples (images x repeats) at " +
                       std::to_string(o.resolution) + " px hold " +
                       util::format_with("%.1f", examples * per_example / 1073741824.0) +
                       " GiB of latents on every rank, more than the node has available (" +
                       util::format_with("%.1f", available / 1073741824.0) + " GiB)",
                   "set data.cache_dir (each step then reads its examples from disk) or lower data.repeats");
}

// How many times each encoded example stands in the dataset: data.repeats × its image's own
// repeats (kohya folders), [examples] int64.
torch::Tensor example_repeats(const torch::Tensor& file_index, const std::vector<data::ImageFile>& files, int repeats) {
  std::vector<std::int64_t> copies;
  const auto fi = file_index.accessor<std::int64_t, 1>();
  for (std::int64_t e = 0; e < fi.size(0); ++e) {
    copies.push_back(repeats * files[static_cast<std::size_t>(fi[e])].repeats);
  }
  return torch::tensor(copies, torch::kLong);
}

// Every rank's examples of one bucket, rank-major, each repeated as its image is when the
// repeats are identical tensors (no random flip or crop).
// Cache entry keys (64 hex digits each) as rows of bytes, for a gather, and back.
torch::Tensor key_rows(const std::vector<std::string>& keys) {
  torch::Tensor t = torch::zeros({static_cast<std::int64_t>(keys.size()), 64}, torch::kByte);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    std::memcpy(t[static_cast<std::int64_t>(i)].data_ptr(), keys[i].data(), std::min<std::size_t>(64, keys[i].size()));
  }
  return t;
}

std::vector<std::string> keys_of(const torch::Tensor& rows) {
  std::vector<std::string> keys;
  const torch::Tensor c = rows.contiguous();
  for (std::int64_t i = 0; i < c.size(0); ++i) keys.emplace_back(static_cast<const char*>(c[i].data_ptr()), 64);
  return keys;
}

// Every rank's examples of one bucket, rank-major, each repeated as its image is when the
// repeats are identical tensors (no random flip or crop). With a cache (`cached`) only the
// entry keys travel; the latents stay in the cache.
LatentGroup gather_group(LocalShare* mine, const data::BucketSize& size, std::int64_t channels,
                         const std::vector<data::ImageFile>& files, const std::vector<std::size_t>& file_prompt,
                         const ImageSetOptions& o, bool repeat, bool cached, const torch::Device& device,
                         dist::HostCollectives& comm) {
  const std::int64_t h = size.height / 8, w = size.width / 8;
  const auto stack = [&](const std::vector<torch::Tensor>& rows) {
    return rows.empty() ? torch::empty({0, channels, h, w}) : torch::stack(rows);
  };
  torch::Tensor mean, std, keys;
  // Host data (the shares were copied to the CPU as they were encoded), so host collectives.
  if (cached) {
    keys = comm.all_gather_rows(key_rows(mine ? mine->keys : std::vector<std::string>{}), "all-gather of cache keys");
  } else {
    mean = comm.all_gather_rows(stack(mine ? mine->means : std::vector<torch::Tensor>{}),
                                "all-gather of image latents (mean)");
    std = comm.all_gather_rows(stack(mine ? mine->stds : std::vector<torch::Tensor>{}),
                               "all-gather of image latents (std)");
  }
  torch::Tensor ids = mine && !mine->time_ids.empty() ? torch::stack(mine->time_ids) : torch::empty({0, 6});
  torch::Tensor file_index = torch::tensor(mine ? mine->files : std::vector<std::int64_t>{}, torch::kLong);
  ids = comm.all_gather_rows(ids, "all-gather of time ids");
  file_index = comm.all_gather_rows(file_index, "all-gather of file indices");
  if (repeat) {
    // Each example as many times as its image repeats (data.repeats × its folder's repeats).
    const torch::Tensor counts = example_repeats(file_index, files, o.repeats);
    for (torch::Tensor* t : {&mean, &std, &keys, &ids}) {
      if (t->defined()) *t = t->repeat_interleave(counts, 0);
    }
    file_index = file_index.repeat_interleave(counts, 0);
  }
  LatentGroup g;
  g.bucket = size;
  g.channels = channels;
  if (cached) {
    g.keys = keys_of(keys);
  } else {
    g.mean = mean.to(device).contiguous();
    g.std = std.to(device).contiguous();
  }
  g.time_ids = ids.to(device);
  const auto fi = file_index.accessor<std::int64_t, 1>();
  for (std::int64_t e = 0; e < fi.size(0); ++e) g.prompt_index.push_back(file_prompt[static_cast<std::size_t>(fi[e])]);
  return g;
}

}  // namespace

namespace {

std::vector<data::BucketSize> bucket_sizes(std::optional<std::int64_t> min_side, std::optional<std::int64_t> max_side,
                                           std::int64_t bucket_step, int resolution) {
  const int step = static_cast<int>(bucket_step);
  const int min = static_cast<int>(min_side.value_or(std::max(step, resolution / 4 / step * step)));
  const int max = static_cast<int>(max_side.value_or(std::max(min, 2 * resolution / step * step)));
  return data::bucket_sizes(resolution, min, max, step);
}

}  // namespace

std::vector<data::BucketSize> training_buckets(const config::DataConfig& d, int resolution) {
  return bucket_sizes(d.min_bucket_resolution, d.max_bucket_resolution, d.bucket_step, resolution);
}

std::vector<data::BucketSize> subset_buckets(const config::ResolvedSubset& sub) {
  if (!sub.bucketing) return {};
  return bucket_sizes(sub.min_bucket_resolution, sub.max_bucket_resolution, sub.bucket_step,
                      static_cast<int>(sub.resolution));
}

std::int64_t TrainingData::class_row(std::int64_t i) const {
  const std::int64_t n = instance.size(), e = i % n;
  for (const SubsetRows& s : subsets) {
    if (e < s.instance_offset || e >= s.instance_offset + s.instance_count) continue;
    // The k-th time this subset's examples come round: one subset cycles as i mod class count.
    const std::int64_t local = e - s.instance_offset + s.instance_count * (i / n);
    return s.class_offset + local % s.class_count;
  }
  throw Error("internal: dataset index " + std::to_string(i) + " is in no subset");
}

std::int64_t EncodedImages::size() const {
  std::int64_t n = 0;
  for (const auto& g : groups) n += g.size();
  return n;
}

std::vector<std::int64_t> EncodedImages::group_sizes() const {
  std::vector<std::int64_t> sizes;
  for (const auto& g : groups) sizes.push_back(g.size());
  return sizes;
}

std::pair<std::size_t, std::int64_t> EncodedImages::locate(std::int64_t example) const {
  for (std::size_t k = 0; k < groups.size(); ++k) {
    if (example < groups[k].size()) return {k, example};
    example -= groups[k].size();
  }
  throw Error("internal: example " + std::to_string(example) + " past the encoded examples");
}

EncodedImages encode_image_folder(const std::vector<data::ImageFile>& files, const ImageSetOptions& o,
                                  nn::AutoencoderKL& vae, PromptTable& prompts, const torch::Device& device,
                                  const Logger& log, dist::HostCollectives& comm,
                                  const std::function<void()>& between_rounds, LatentCache* cache,
                                  const std::string& cache_key, int encode_batch) {
  const int rank = comm.rank(), world = comm.world_size();
  std::vector<std::size_t> file_prompt;
  std::size_t captions = 0;
  for (const auto& f : files) {
    file_prompt.push_back(prompts.add(f.caption ? *f.caption : o.prompt));
    if (f.caption) ++captions;
  }
  if (!cache) check_examples_fit(files, o, vae->config().latent_channels);
  const util::Stopwatch watch;
  ShareEncoder encoder(o, vae, device, cache, cache_key, log, encode_batch);
  std::int64_t used = 0, skipped = 0;
  // Without random flips or crops every repeat is the same tensor: encode it once.
  const bool random = o.random_flip || !o.center_crop;
  // A preemption check after every kFilesPerCheck files of the listing: the same number of
  // collectives whatever the rank count (each rank encodes its files of each stretch).
  constexpr std::size_t kFilesPerCheck = 8;
  const auto ranks = static_cast<std::size_t>(world);
  // A long encode says how far it is (rank 0's share), every kReportEveryS seconds.
  constexpr double kReportEveryS = 30;
  double next_report = kReportEveryS;
  for (std::size_t start = 0; start < files.size(); start += kFilesPerCheck) {
    const std::size_t end = std::min(files.size(), start + kFilesPerCheck);
    if (rank == 0 && watch.seconds() >= next_report) {
      log.info(o.key + ": encoding, " + std::to_string(start) + " of " + std::to_string(files.size()) +
               " files dealt so far (" + util::format_with("%.0f", watch.seconds()) + " s)");
      next_report = watch.seconds() + kReportEveryS;
    }
    for (std::size_t i = start; i < end; ++i) {
      if (i % ranks != static_cast<std::size_t>(rank) || (o.stopping && o.stopping())) continue;
      if (encoder.add_file(files[i], i, random ? o.repeats * files[i].repeats : 1)) {
        ++used;
      } else {
        ++skipped;
      }
    }
    if (between_rounds) between_rounds();
  }
  std::map<std::size_t, LocalShare>& shares = encoder.finish();
  used = static_cast<std::int64_t>(std::llround(comm.all_reduce_sum(static_cast<double>(used), "image count")));
  skipped = static_cast<std::int64_t>(std::llround(comm.all_reduce_sum(static_cast<double>(skipped), "skip count")));
  EncodedImages out;
  out.images_used = static_cast<std::size_t>(used);
  out.images_skipped = static_cast<std::size_t>(skipped);
  // The buckets some rank holds examples of, in bucket order (one group without bucketing).
  const std::size_t n_buckets = o.buckets.empty() ? 1 : o.buckets.size();
  std::vector<std::uint64_t> held(n_buckets, 0);
  for (const auto& [bucket, share] : shares) held[bucket] = 1;
  comm.all_reduce_max(held, "buckets holding examples");
  if (used == 0) {
    throw UsageError(o.key + ": no usable image in " + util::quoted(o.dir) + " (" + std::to_string(skipped) +
                     " unreadable, skipped)");
  }
  const std::int64_t channels = vae->config().latent_channels;
  for (std::size_t b = 0; b < n_buckets; ++b) {
    if (!held[b]) continue;
    auto it = shares.find(b);
    const data::BucketSize size = o.buckets.empty() ? data::BucketSize{o.resolution, o.resolution} : o.buckets[b];
    out.groups.push_back(gather_group(it == shares.end() ? nullptr : &it->second, size, channels, files, file_prompt, o,
                                      !random, cache != nullptr, device, comm));
  }
  log_image_set(o, out, captions, world, watch.seconds(), log);
  return out;
}

void encode_prompts(PromptTable& prompts, pipeline::SdxlPipeline& pipe, torch::Dtype dtype, const Logger& log,
                    dist::HostCollectives& comm, LatentCache* cache, const std::string& cache_key, bool token_ids) {
  torch::NoGradGuard no_grad;
  const util::Stopwatch watch;
  std::int64_t encoded = 0;
  std::vector<torch::Tensor> embeds, pooled, ids_1, ids_2;
  for (std::size_t i = 0; i < prompts.prompts.size(); ++i) {
    const std::string& p = prompts.prompts[i];
    if (comm.rank() == 0) {
      if (const auto warning = pipeline::truncation_warning(*pipe.tokenizer, p)) log.warn(*warning);
    }
    if (token_ids) {
      // The text encoders encode each step's prompts: no embedding is computed now, and none is
      // cached (with pivotal tuning's untrained tokens it would be wrong for any other run).
      ids_1.push_back(torch::tensor(pipe.tokenizer->tokenize(p), torch::kLong));
      ids_2.push_back(torch::tensor(pipe.tokenizer_2->tokenize(p), torch::kLong));
      continue;
    }
    if (cache) {
      // Shared by the ranks; each stores what it encoded, the steps read what they need.
      const std::string key = util::sha256_hex(cache_key + "|prompt|" + c10::toString(dtype) + "|" + p);
      prompts.keys.push_back(key);
      if (i % static_cast<std::size_t>(comm.world_size()) != static_cast<std::size_t>(comm.rank())) continue;
      if (cache->find_prompt(key)) continue;
      ++encoded;
      const auto e = pipe.encode(p);
      cache->store_prompt(key, {e.prompt_embeds[0].to(torch::kFloat), e.pooled_prompt_embeds[0].to(torch::kFloat)});
      continue;
    }
    const auto e = pipe.encode(p);
    embeds.push_back(e.prompt_embeds);
    pooled.push_back(e.pooled_prompt_embeds);
  }
  prompts.dtype = dtype;
  prompts.device = pipe.options.device;
  if (token_ids) {
    log.info("prompts: " + std::to_string(prompts.prompts.size()) + " tokenized; the text encoders encode them in "
             "every step");
  } else if (cache) {
    cache->flush();
    encoded = static_cast<std::int64_t>(std::llround(comm.all_reduce_sum(static_cast<double>(encoded), "prompts encoded")));
    log.info("prompt embeddings: " + std::to_string(prompts.prompts.size()) + " prompts, " + std::to_string(encoded) +
             " encoded and stored, the others read from data.cache_dir (" + util::format_with("%.1f", watch.seconds()) +
             " s)");
  } else {
    prompts.prompt_embeds = torch::cat(embeds).to(dtype);
    prompts.pooled = torch::cat(pooled).to(dtype);
  }
  if (!ids_1.empty()) {
    prompts.ids_1 = torch::stack(ids_1).to(prompts.device);
    prompts.ids_2 = torch::stack(ids_2).to(prompts.device);
  }
}

std::pair<torch::Tensor, torch::Tensor> PromptTable::embeddings(const std::vector<std::int64_t>& rows,
                                                                const torch::Tensor& rows_on_device,
                                                                LatentCache* cache) const {
  if (keys.empty()) return {prompt_embeds.index_select(0, rows_on_device), pooled.index_select(0, rows_on_device)};
  std::vector<torch::Tensor> e, p;
  for (const auto r : rows) {
    const CachedPrompt c = cache->read_prompt(keys.at(static_cast<std::size_t>(r)));
    e.push_back(c.embeds);
    p.push_back(c.pooled);
  }
  return {torch::stack(e).to(device, dtype), torch::stack(p).to(device, dtype)};
}

std::pair<torch::Tensor, torch::Tensor> LatentGroup::posterior(const std::vector<std::int64_t>& rows,
                                                               LatentCache* cache, const torch::Device& device) const {
  if (keys.empty()) {
    // Uploaded without a stream sync (util/to_device.h): nothing in a step waits for the device.
    const auto r = util::to_device_async(torch::tensor(rows, torch::kLong), mean.device());
    return {mean.index_select(0, r), std.index_select(0, r)};
  }
  std::vector<torch::Tensor> m, s;
  for (const auto row : rows) {
    const CachedLatent c = cache->read(keys.at(static_cast<std::size_t>(row)), channels);
    m.push_back(c.mean);
    s.push_back(c.std);
  }
  return {torch::stack(m).to(device), torch::stack(s).to(device)};
}

namespace {

// How a subset's instance images are listed, preprocessed and repeated.
ImageSetOptions instance_options(const config::RunConfig& cfg, const config::ResolvedSubset& sub,
                                 const RunSettings& s) {
  ImageSetOptions io;
  io.dir = sub.instance_dir;
  io.key = sub.key + ".instance_dir";
  io.prompt = sub.instance_prompt;
  io.caption_ext = sub.caption_ext;
  io.format = sub.format;
  io.caption_column = sub.caption_column;
  io.resolution = static_cast<int>(sub.resolution);
  io.center_crop = cfg.data.center_crop;
  io.random_flip = cfg.data.random_flip;
  io.repeats = static_cast<int>(sub.repeats);
  io.skip_bad_images = cfg.data.skip_bad_images;
  io.buckets = subset_buckets(sub);
  // The cache key covers data.resolution and [data]'s buckets; a subset preprocessed otherwise
  // (its own size or bucket settings) keys its entries apart.
  if (io.resolution != s.resolution) io.cache_variant = "resolution " + std::to_string(io.resolution);
  const auto run_buckets = cfg.data.bucketing ? training_buckets(cfg.data, io.resolution) : std::vector<data::BucketSize>{};
  if (io.buckets != run_buckets) {
    std::string names = io.buckets.empty() ? " none" : "";
    for (const auto& b : io.buckets) names += " " + b.name();
    io.cache_variant += (io.cache_variant.empty() ? "buckets" : " buckets") + names;
  }
  return io;
}

// A subset's class images: a plain folder, one prompt, no repeats, at the subset's size (in
// its buckets when it buckets: kohya buckets regularization images too).
ImageSetOptions class_options(const ImageSetOptions& instance, const config::ResolvedSubset& sub) {
  ImageSetOptions co = instance;
  co.dir = *sub.class_dir;
  co.key = sub.key + ".class_dir";
  co.prompt = *sub.class_prompt;
  co.caption_ext.reset();
  co.format = "folder";
  co.repeats = 1;
  co.only_image_files = true;
  return co;
}

// Pivotal tuning whose abstractions no prompt or caption contains trains nothing but the
// UNet's LoRA: said loudly, with the near miss when a prompt has one in other letter case.
void warn_if_abstractions_unused(const PromptTable& prompts, const text::TokenAbstractions& abstractions,
                                 const Logger& log) {
  if (abstractions.empty()) return;
  for (const auto& p : prompts.prompts) {
    if (abstractions.apply(p) != p) return;
  }
  std::string near;
  for (const auto& [name, tokens] : abstractions.entries()) {
    for (const auto& p : prompts.prompts) {
      if (near.empty() && util::to_lower(p).find(util::to_lower(name)) != std::string::npos) {
        near = " (" + util::quoted(p) + " has " + util::quoted(name) + " in other letter case; the match is "
               "case-sensitive)";
      }
    }
  }
  log.warn("lora.train_text_encoder_ti: no instance prompt or caption contains " + abstractions.describe() +
           ", so the new tokens' embeddings will not train" + near +
           "; write the abstraction into data.instance_prompt or the captions");
}

// What the latent cache gave and took, over all ranks.
void log_cache_use(const LatentCache& cache, dist::HostCollectives& comm, const Logger& log) {
  const auto sum = [&](std::int64_t v, const char* what) {
    return static_cast<std::int64_t>(std::llround(comm.all_reduce_sum(static_cast<double>(v), what)));
  };
  const std::int64_t hits = sum(cache.hits(), "cache hits"), misses = sum(cache.misses(), "cache misses");
  const std::int64_t rejected = sum(cache.rejected(), "damaged cache entries");
  log.info("data.cache_dir: " + std::to_string(hits) + " examples read from the cache, " + std::to_string(misses) +
           " encoded and stored" +
           (rejected ? " (" + std::to_string(rejected) + " of them replacing damaged entries)" : std::string()));
}

// `more`'s examples after `into`'s, each in the group of its size; where each of them went.
std::vector<ExampleRef> append_images(EncodedImages& into, EncodedImages more, bool klass) {
  into.images_used += more.images_used;
  into.images_skipped += more.images_skipped;
  std::vector<ExampleRef> placed;
  for (LatentGroup& g : more.groups) {
    auto same = std::find_if(into.groups.begin(), into.groups.end(),
                             [&](const LatentGroup& h) { return h.bucket == g.bucket; });
    const auto group = static_cast<std::size_t>(same - into.groups.begin());
    const std::int64_t first = same == into.groups.end() ? 0 : same->size();
    for (std::int64_t r = 0; r < g.size(); ++r) placed.push_back({klass, group, first + r});
    if (same == into.groups.end()) {
      into.groups.push_back(std::move(g));
      continue;
    }
    if (same->mean.defined()) {
      same->mean = torch::cat({same->mean, g.mean});
      same->std = torch::cat({same->std, g.std});
    }
    same->keys.insert(same->keys.end(), g.keys.begin(), g.keys.end());
    same->time_ids = torch::cat({same->time_ids, g.time_ids});
    same->prompt_index.insert(same->prompt_index.end(), g.prompt_index.begin(), g.prompt_index.end());
  }
  return placed;
}

std::vector<data::BucketSize> group_sizes_of(const EncodedImages& images) {
  std::vector<data::BucketSize> out;
  for (const LatentGroup& g : images.groups) out.push_back(g.bucket);
  return out;
}

}  // namespace

bool text_encoders_run_each_step(const config::RunConfig& cfg) {
  return cfg.lora.train_text_encoder || cfg.lora.train_text_encoder_ti || cfg.data.shuffle_tags;
}

namespace {

// What encoding an image set needs besides its options and images, the same for every set.
struct SetEncoder {
  pipeline::SdxlPipeline& pipe;
  const RunSettings& settings;
  const Logger& log;
  dist::HostCollectives& comm;
  const std::function<void()>& between_rounds;
  LatentCache* cache;
  const std::string& cache_key;
  const std::function<bool()>& stopping;

  EncodedImages encode(const std::vector<data::ImageFile>& files, ImageSetOptions o, PromptTable& prompts) const {
    o.stopping = stopping;
    return encode_image_folder(files, o, pipe.vae, prompts, settings.device, log, comm, between_rounds, cache,
                               cache_key);
  }
};

// Every subset's instance images into d.instance (subset k's flips and crops from stream 2k of
// `augment`); where each subset's examples went.
std::vector<SubsetExamples> encode_instance_images(const config::RunConfig& cfg,
                                                   const std::vector<config::ResolvedSubset>& subsets,
                                                   std::uint64_t augment, const SetEncoder& e, TrainingData& d) {
  std::vector<SubsetExamples> examples;
  for (std::size_t k = 0; k < subsets.size(); ++k) {
    const config::ResolvedSubset& sub = subsets[k];
    ImageSetOptions io = instance_options(cfg, sub, e.settings);
    if (!io.buckets.empty()) {
      e.log.info(sub.key + ".bucketing: " + std::to_string(io.buckets.size()) + " buckets of about " +
                 std::to_string(io.resolution) + "^2 px, sides " + std::to_string(io.buckets.front().width) + " to " +
                 std::to_string(io.buckets.back().width) + " in steps of " + std::to_string(sub.bucket_step));
    }
    io.augment_seed = derive_seed(augment, 2 * k);
    EncodedImages images = e.encode(list_images_collective(io, e.comm, e.log), io, d.prompts);
    d.subsets.push_back({d.instance.size(), images.size(), 0, 0, images.images_used});
    examples.push_back({append_images(d.instance, std::move(images), false), {}});
    if (util::trim(sub.instance_prompt).empty()) {
      e.log.warn(sub.key + ".instance_prompt is empty: images without a caption train on an empty prompt");
    }
  }
  return examples;
}

// Every subset's class images into d.klass (stream 2k + 1), noting where they went.
void encode_class_images(const config::RunConfig& cfg, const std::vector<config::ResolvedSubset>& subsets,
                         std::uint64_t augment, const SetEncoder& e, TrainingData& d,
                         std::vector<SubsetExamples>& examples) {
  for (std::size_t k = 0; k < subsets.size(); ++k) {
    ImageSetOptions co = class_options(instance_options(cfg, subsets[k], e.settings), subsets[k]);
    co.augment_seed = derive_seed(augment, 2 * k + 1);
    // As diffusers' dataset: num_class_images of the folder's images (in name order), not all.
    std::vector<data::ImageFile> class_files = list_images_collective(co, e.comm, e.log);
    const auto wanted = subsets[k].num_class_images;
    if (class_files.size() > static_cast<std::size_t>(wanted)) class_files.resize(static_cast<std::size_t>(wanted));
    EncodedImages images = e.encode(class_files, co, d.prompts);
    if (e.comm.rank() == 0 && static_cast<std::int64_t>(images.images_used) < wanted) {
      e.log.warn(co.key + ": " + std::to_string(images.images_used) + " usable class images of the " +
                 std::to_string(wanted) + " num_class_images asks for (" + std::to_string(images.images_skipped) +
                 " unreadable, skipped); prior preservation trains on those");
    }
    d.subsets[k].class_offset = d.klass.size();
    d.subsets[k].class_count = images.size();
    examples[k].klass = append_images(d.klass, std::move(images), true);
  }
}

}  // namespace

TrainingData encode_training_data(const config::RunConfig& cfg, const RunSettings& s, pipeline::SdxlPipeline& pipe,
                                  const Logger& log, dist::HostCollectives& comm,
                                  const std::function<void()>& between_rounds, const std::string& cache_key,
                                  const std::function<bool()>& stopping) {
  TrainingData d;
  // Each image set draws its flips and crops from its own stream: instance images of subset k
  // from stream 2k, its class images from 2k + 1.
  const std::uint64_t augment = derive_seed(s.seed, kAugmentStream);
  std::shared_ptr<LatentCache> cache;
  if (!cache_key.empty()) cache = std::make_shared<LatentCache>(fs::path(*cfg.data.cache_dir) / cache_key, comm.rank(), log);
  const SetEncoder encoder{pipe, s, log, comm, between_rounds, cache.get(), cache_key, stopping};
  // Every subset's instance images, then (prior preservation) every subset's class images, so
  // that one subset draws its augmentations as runs did before subsets.
  const std::vector<config::ResolvedSubset> subsets = config::resolve_subsets(cfg.data);
  std::vector<SubsetExamples> examples = encode_instance_images(cfg, subsets, augment, encoder, d);
  if (s.prior) encode_class_images(cfg, subsets, augment, encoder, d, examples);
  if (s.prior && config::several_sizes(cfg.data)) {
    d.mix = PriorMix(examples, group_sizes_of(d.instance), group_sizes_of(d.klass));
  }
  if (cache) log_cache_use(*cache, comm, log);
  if (comm.rank() == 0) warn_if_abstractions_unused(d.prompts, pipe.tokenizer->abstractions(), log);
  if (cfg.data.caption_dropout > 0) d.empty_prompt = d.prompts.add("");
  encode_prompts(d.prompts, pipe, s.dtype, log, comm, cache.get(), cache_key, text_encoders_run_each_step(cfg));
  if (cache) {
    // Every rank's shards are written: the steps read from all of them.
    comm.barrier("latent cache written");
    cache->refresh();
    d.cache = cache;
  }
  if (!text_encoders_run_each_step(cfg)) {
    // Frozen text encoders: validation prompts are embedded now and the encoders freed (with
    // data.shuffle_tags they encode each step's shuffled captions).
    std::vector<std::string> validation_prompts = cfg.validation.prompts;
    if (!validation_prompts.empty()) {
      validation_prompts.push_back(cfg.validation.negative_prompt);
      pipe.cache_prompts(validation_prompts);
    }
    pipe.release_text_encoders();
  }
  pipe.vae->release_encoder();
  return d;
}

}  // namespace sdxl::train
