#include "sdxl_dreambooth/train/training_data.h"

#include "sdxl_dreambooth/data/image_folder.h"
#include "sdxl_dreambooth/data/preprocess.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/util/strings.h"

#include <algorithm>

namespace sdxl::train {

std::size_t PromptTable::add(const std::string& prompt) {
  auto it = std::find(prompts.begin(), prompts.end(), prompt);
  if (it != prompts.end()) return static_cast<std::size_t>(it - prompts.begin());
  prompts.push_back(prompt);
  return prompts.size() - 1;
}

EncodedImages encode_image_folder(const ImageSetOptions& o, nn::AutoencoderKL& vae, PromptTable& prompts,
                                  std::mt19937_64& rng, const torch::Device& device, const Logger& log,
                                  int encode_batch) {
  const auto files = data::list_image_files(o.dir, o.key, o.caption_ext);
  if (files.empty()) {
    throw UsageError(o.key + ": no JPEG, PNG or WebP image in " + util::quoted(o.dir));
  }
  EncodedImages out;
  std::vector<torch::Tensor> means, stds, time_ids;
  std::vector<torch::Tensor> pending;  // preprocessed pixels waiting for the VAE
  std::size_t captions = 0;
  torch::NoGradGuard no_grad;
  const auto vae_dtype = vae->decoder->conv_in->weight.scalar_type();
  auto flush = [&] {
    if (pending.empty()) return;
    const auto posterior = vae->encode(torch::stack(pending).to(device, vae_dtype));
    means.push_back(posterior.mean.to(torch::kFloat));
    stds.push_back(posterior.std.to(torch::kFloat));
    pending.clear();
  };
  for (const auto& file : files) {
    data::DecodedImage decoded;
    try {
      decoded = data::decode_image_file(file.path);
    } catch (const Error& e) {
      if (!o.skip_bad_images) {
        throw Error(e.what(), "set data.skip_bad_images = true to skip unreadable images with a warning");
      }
      log.warn(std::string("skipping ") + e.what());
      ++out.images_skipped;
      continue;
    }
    ++out.images_used;
    const auto& img = decoded.image;
    if (std::min(img.width, img.height) < o.resolution) {
      log.warn(file.path + " is " + std::to_string(img.width) + "x" + std::to_string(img.height) +
               ", smaller than the training resolution " + std::to_string(o.resolution) + "; it is upscaled");
    }
    const std::size_t prompt = prompts.add(file.caption ? *file.caption : o.prompt);
    if (file.caption) ++captions;
    // Without random flips or crops every repeat is the same tensor: encode it once.
    const bool random = o.random_flip || !o.center_crop;
    const int variants = random ? o.repeats : 1;
    for (int v = 0; v < variants; ++v) {
      data::PreprocessOptions po;
      po.resolution = o.resolution;
      po.center_crop = o.center_crop;
      // diffusers: `random.random() < 0.5`; one draw per example.
      po.flip = o.random_flip && (rng() >> 11) * 0x1.0p-53 < 0.5;
      const auto p = data::preprocess(img, po, rng);
      pending.push_back(p.pixels);
      const auto ids = torch::tensor({static_cast<float>(p.original_size_hw[0]), static_cast<float>(p.original_size_hw[1]),
                                      static_cast<float>(p.crop_top_left_yx[0]), static_cast<float>(p.crop_top_left_yx[1]),
                                      static_cast<float>(o.resolution), static_cast<float>(o.resolution)});
      const int copies = random ? 1 : o.repeats;
      for (int c = 0; c < copies; ++c) {
        time_ids.push_back(ids);
        out.prompt_index.push_back(prompt);
        out.source.push_back(file.path);
      }
      if (static_cast<int>(pending.size()) >= encode_batch) flush();
    }
  }
  flush();
  if (out.images_used == 0) {
    throw UsageError(o.key + ": no usable image in " + util::quoted(o.dir) + " (" +
                     std::to_string(out.images_skipped) + " unreadable, skipped)");
  }
  torch::Tensor mean = torch::cat(means), std = torch::cat(stds);
  if (!(o.random_flip || !o.center_crop) && o.repeats > 1) {
    mean = mean.repeat_interleave(o.repeats, 0);
    std = std.repeat_interleave(o.repeats, 0);
  }
  out.mean = mean.contiguous();
  out.std = std.contiguous();
  out.time_ids = torch::stack(time_ids).to(device);
  log.info(o.key + ": " + std::to_string(out.images_used) + " images" +
           (out.images_skipped ? " (" + std::to_string(out.images_skipped) + " skipped)" : std::string()) +
           (captions ? ", " + std::to_string(captions) + " with captions" : std::string()) + ", " +
           std::to_string(out.size()) + " examples encoded at " + std::to_string(o.resolution) + " px");
  return out;
}

void encode_prompts(PromptTable& prompts, pipeline::SdxlPipeline& pipe, torch::Dtype dtype) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> embeds, pooled;
  for (const auto& p : prompts.prompts) {
    const auto e = pipe.encode(p);
    embeds.push_back(e.prompt_embeds);
    pooled.push_back(e.pooled_prompt_embeds);
  }
  prompts.prompt_embeds = torch::cat(embeds).to(dtype);
  prompts.pooled = torch::cat(pooled).to(dtype);
}

}  // namespace sdxl::train
