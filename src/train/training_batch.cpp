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

DiffusionBatch assemble_batch(const TrainingData& data, const std::vector<std::int64_t>& idx, at::Generator& gen,
                              const BatchOptions& o) {
  // Every row of a micro-batch comes from one group (DataOrder draws a global batch from one
  // bucket); class examples are one group (bucketing with prior preservation is refused).
  const LatentGroup* inst = nullptr;
  const LatentGroup* cls = o.prior ? &data.klass.groups.at(0) : nullptr;
  std::vector<std::int64_t> rows_i, rows_c, prompt_rows;
  for (auto i : idx) {
    const auto [group, row] = data.instance.locate(i % data.instance.size());
    const LatentGroup* g = &data.instance.groups[group];
    if (inst && g != inst) throw Error("internal: a micro-batch mixes aspect-ratio buckets");
    inst = g;
    rows_i.push_back(row);
    prompt_rows.push_back(static_cast<std::int64_t>(inst->prompt_index[static_cast<std::size_t>(row)]));
  }
  if (cls) {
    for (auto i : idx) {
      rows_c.push_back(data.class_row(i));
      prompt_rows.push_back(static_cast<std::int64_t>(cls->prompt_index[static_cast<std::size_t>(rows_c.back())]));
    }
  }
  auto take = [&](const torch::Tensor& a, const torch::Tensor* b) {
    // Uploaded without a stream sync (util/to_device.h): nothing in a step waits for the device.
    const auto ri = util::to_device_async(torch::tensor(rows_i, torch::kLong), a.device());
    torch::Tensor t = a.index_select(0, ri);
    if (b) t = torch::cat({t, b->index_select(0, util::to_device_async(torch::tensor(rows_c, torch::kLong), b->device()))});
    return t;
  };
  auto [mean, std] = inst->posterior(rows_i, data.cache.get(), o.device);
  if (cls) {
    const auto [class_mean, class_std] = cls->posterior(rows_c, data.cache.get(), o.device);
    mean = torch::cat({mean, class_mean});
    std = torch::cat({std, class_std});
  }
  DiffusionBatch b;
  b.time_ids = take(inst->time_ids, cls ? &cls->time_ids : nullptr);
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
    const torch::Tensor u = at::rand({static_cast<std::int64_t>(rows_i.size())}, gen, f32);
    for (std::size_t k = 0; k < rows_i.size(); ++k) {
      if (u[static_cast<std::int64_t>(k)].item<double>() < o.caption_dropout) {
        prompt_rows[k] = static_cast<std::int64_t>(*data.empty_prompt);
      }
    }
  }
  const PromptTable& prompts = data.prompts;
  const auto pr = util::to_device_async(torch::tensor(prompt_rows, torch::kLong), prompts.device);
  if (o.text_encoders) {
    torch::Tensor ids_1 = prompts.ids_1.index_select(0, pr), ids_2 = prompts.ids_2.index_select(0, pr);
    if (o.shuffle_tags) shuffle_caption_tags(data, prompt_rows, rows_i.size(), gen, o, ids_1, ids_2);
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
