#include "sdxl_dreambooth/train/training_batch.h"

#include "sdxl_dreambooth/data/caption_tags.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/nn/prompt_encoding.h"
#include "sdxl_dreambooth/util/to_device.h"

namespace sdxl::train {

torch::Tensor pyramid_noise(torch::Tensor noise, std::int64_t iterations, double discount, at::Generator& gen) {
  // ref: kohya sd-scripts library/custom_train_functions.py pyramid_noise_like.
  namespace F = torch::nn::functional;
  const std::int64_t b = noise.size(0), c = noise.size(1), w = noise.size(2), h = noise.size(3);
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat);
  for (std::int64_t i = 0; i < iterations; ++i) {
    const double r = at::rand({1}, gen, f32).item<double>() * 2 + 2;
    const double scale = std::pow(r, static_cast<double>(i));
    const auto wn = std::max<std::int64_t>(1, static_cast<std::int64_t>(static_cast<double>(w) / scale));
    const auto hn = std::max<std::int64_t>(1, static_cast<std::int64_t>(static_cast<double>(h) / scale));
    const torch::Tensor level = F::interpolate(at::randn({b, c, wn, hn}, gen, f32),
                                               F::InterpolateFuncOptions()
                                                   .size(std::vector<std::int64_t>{w, h})
                                                   .mode(torch::kBilinear)
                                                   .align_corners(false));
    noise = noise + level * std::pow(discount, static_cast<double>(i));
    if (wn == 1 || hn == 1) break;
  }
  return noise / noise.std();
}

namespace {

// data.shuffle_tags: the token ids of the first `instance_rows` rows (those not dropped to the
// empty caption) become those of their caption with its tags shuffled.
void shuffle_caption_tags(const TrainingData& data, const std::vector<std::int64_t>& prompt_rows,
                          std::size_t instance_rows, at::Generator& gen, const BatchOptions& o, torch::Tensor& ids_1,
                          torch::Tensor& ids_2) {
  const pipeline::SdxlPipeline& pipe = *o.text_encoders;
  const auto permutation = [&](std::int64_t n) {
    const torch::Tensor p = at::randperm(n, gen, torch::TensorOptions().dtype(torch::kLong));
    return std::vector<std::int64_t>(p.data_ptr<std::int64_t>(), p.data_ptr<std::int64_t>() + n);
  };
  for (std::size_t k = 0; k < instance_rows; ++k) {
    const auto row = static_cast<std::size_t>(prompt_rows[k]);
    if (data.empty_prompt && row == *data.empty_prompt) continue;
    const std::string caption =
        data::shuffle_tags(data.prompts.prompts[row], o.caption_separator, o.keep_tokens, permutation);
    const auto k64 = static_cast<std::int64_t>(k);
    ids_1[k64].copy_(torch::tensor(pipe.tokenizer->tokenize(caption), torch::kLong));
    ids_2[k64].copy_(torch::tensor(pipe.tokenizer_2->tokenize(caption), torch::kLong));
  }
}

}  // namespace

namespace {

// A micro-batch's rows: its instance rows, then its class rows, each part from one group of
// one size, and every row's prompt.
struct BatchRows {
  const LatentGroup* instance = nullptr;
  const LatentGroup* klass = nullptr;
  std::vector<std::int64_t> instance_rows, class_rows, prompt_rows;
  void add(const LatentGroup& g, bool is_class, std::int64_t row) {
    const LatentGroup*& part = is_class ? klass : instance;
    if (part && part != &g) throw Error("internal: a micro-batch mixes aspect-ratio buckets");
    part = &g;
    (is_class ? class_rows : instance_rows).push_back(row);
  }
  void add_prompts(const LatentGroup* g, const std::vector<std::int64_t>& rows) {
    for (auto r : rows) prompt_rows.push_back(static_cast<std::int64_t>(g->prompt_index[static_cast<std::size_t>(r)]));
  }
};

// Dataset indices `idx` as rows: instance rows of one bucket each paired with a class row of
// its subset (DataOrder draws a global batch from one bucket; class examples are one group),
// or, mixed (train/prior_mix.h), whichever instance and class examples the indices name.
BatchRows batch_rows(const TrainingData& data, const std::vector<std::int64_t>& idx, bool prior) {
  BatchRows r;
  if (!data.mix.empty()) {
    for (auto i : idx) {
      const ExampleRef& e = data.mix.example(i % data.mix.size());
      r.add((e.klass ? data.klass : data.instance).groups.at(e.group), e.klass, e.row);
    }
    if (r.instance && r.klass && !(r.instance->bucket == r.klass->bucket)) {
      throw Error("internal: a micro-batch mixes instance and class examples of two sizes");
    }
  } else {
    for (auto i : idx) {
      const auto [group, row] = data.instance.locate(i % data.instance.size());
      r.add(data.instance.groups[group], false, row);
    }
    for (std::size_t k = 0; prior && k < idx.size(); ++k) r.add(data.klass.groups.at(0), true, data.class_row(idx[k]));
  }
  if (r.instance) r.add_prompts(r.instance, r.instance_rows);
  if (r.klass) r.add_prompts(r.klass, r.class_rows);
  return r;
}

// Rows `rows` of a per-example tensor on its device.
torch::Tensor take_rows(const torch::Tensor& t, const std::vector<std::int64_t>& rows) {
  // Uploaded without a stream sync (util/to_device.h): nothing in a step waits for the device.
  return t.index_select(0, util::to_device_async(torch::tensor(rows, torch::kLong), t.device()));
}

torch::Tensor joined(const std::vector<torch::Tensor>& parts) { return parts.size() == 1 ? parts[0] : torch::cat(parts); }

}  // namespace

DiffusionBatch assemble_batch(const TrainingData& data, const std::vector<std::int64_t>& idx, at::Generator& gen,
                              const BatchOptions& o) {
  BatchRows rows = batch_rows(data, idx, o.prior);
  std::vector<std::int64_t>& prompt_rows = rows.prompt_rows;
  std::vector<torch::Tensor> means, stds, ids;
  for (const auto& [group, part] : {std::make_pair(rows.instance, &rows.instance_rows),
                                    std::make_pair(rows.klass, &rows.class_rows)}) {
    if (!group) continue;
    auto [m, sd] = group->posterior(*part, data.cache.get(), o.device);
    means.push_back(m);
    stds.push_back(sd);
    ids.push_back(take_rows(group->time_ids, *part));
  }
  const torch::Tensor mean = joined(means), std = joined(stds);
  DiffusionBatch b;
  b.time_ids = joined(ids);
  if (!data.mix.empty()) b.instance_rows = static_cast<std::int64_t>(rows.instance_rows.size());
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat);
  const std::int64_t B = mean.size(0), C = mean.size(1);
  const torch::Tensor sample = util::to_device_async(at::randn(mean.sizes(), gen, f32), o.device);
  b.latents = (mean + std * sample);
  // ref: train_dreambooth_lora_sdxl.py: (z - latents_mean) · scaling_factor / latents_std.
  b.latents = o.latents_mean.defined() ? (b.latents - o.latents_mean) * o.scaling_factor / o.latents_std
                                       : b.latents * o.scaling_factor;
  torch::Tensor noise = at::randn(mean.sizes(), gen, f32);
  if (o.noise_offset > 0) noise = noise + o.noise_offset * at::randn({B, C, 1, 1}, gen, f32);
  if (o.multires_iterations > 0) noise = pyramid_noise(noise, o.multires_iterations, o.multires_discount, gen);
  b.noise = util::to_device_async(noise, o.device);
  b.timesteps = util::to_device_async(
      at::randint(o.min_timestep, o.max_timestep, {B}, gen, torch::TensorOptions().dtype(torch::kLong)), o.device);
  if (o.caption_dropout > 0) {
    if (!data.empty_prompt) throw Error("internal: data.caption_dropout without the empty prompt encoded");
    const torch::Tensor u = at::rand({static_cast<std::int64_t>(rows.instance_rows.size())}, gen, f32);
    for (std::size_t k = 0; k < rows.instance_rows.size(); ++k) {
      if (u[static_cast<std::int64_t>(k)].item<double>() < o.caption_dropout) {
        prompt_rows[k] = static_cast<std::int64_t>(*data.empty_prompt);
      }
    }
  }
  const PromptTable& prompts = data.prompts;
  const auto pr = util::to_device_async(torch::tensor(prompt_rows, torch::kLong), prompts.device);
  if (o.text_encoders) {
    torch::Tensor ids_1 = prompts.ids_1.index_select(0, pr), ids_2 = prompts.ids_2.index_select(0, pr);
    if (o.shuffle_tags) shuffle_caption_tags(data, prompt_rows, rows.instance_rows.size(), gen, o, ids_1, ids_2);
    pipeline::SdxlPipeline& pipe = *o.text_encoders;
    std::optional<torch::NoGradGuard> frozen;
    if (!o.text_encoder_grad) frozen.emplace();
    const auto e = nn::encode_prompt(pipe.text_encoder, pipe.text_encoder_2, ids_1, ids_2);
    b.prompt_embeds = o.text_encoder_grad ? e.prompt_embeds : e.prompt_embeds.to(prompts.dtype);
    b.text_embeds = o.text_encoder_grad ? e.pooled_prompt_embeds : e.pooled_prompt_embeds.to(prompts.dtype);
  } else {
    std::tie(b.prompt_embeds, b.text_embeds) = prompts.embeddings(prompt_rows, pr, data.cache.get());
  }
  return b;
}

}  // namespace sdxl::train
