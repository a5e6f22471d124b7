#include "sdxl_dreambooth/pipeline/sdxl_pipeline.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/model/model_location.h"
#include "sdxl_dreambooth/nn/lora_linear.h"
#include "sdxl_dreambooth/sampling/sampler.h"
#include "sdxl_dreambooth/util/regular_file.h"
#include "sdxl_dreambooth/util/strings.h"
#include "sdxl_dreambooth/util/to_device.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>

namespace sdxl::pipeline {
namespace {

// What the VAE decodes from sampled latents. ref: pipeline_stable_diffusion_xl.py: with the VAE's
// per-channel statistics, latents · latents_std / scaling_factor + latents_mean, else
// latents / scaling_factor.
torch::Tensor unscaled_latents(const torch::Tensor& z, const model::VaeConfig& vc) {
  if (!vc.latents_mean) return z / vc.scaling_factor;
  const auto stats = [&](const std::vector<double>& v) {
    return torch::tensor(v, torch::kDouble).to(z.device(), z.scalar_type()).view({1, -1, 1, 1});
  };
  return z * stats(*vc.latents_std) / vc.scaling_factor + stats(*vc.latents_mean);
}

}  // namespace

void validate(const GenerationRequest& r) {
  if (r.prompts.empty()) throw UsageError("no prompt given");
  const std::string size = std::to_string(r.width) + "x" + std::to_string(r.height);
  if (r.width < 8 || r.height < 8 || r.width % 8 != 0 || r.height % 8 != 0) {
    throw UsageError("image size " + size + ": width and height must be positive multiples of 8");
  }
  if (r.width > 8192 || r.height > 8192) throw UsageError("image size " + size + ": at most 8192 pixels a side");
  if (r.steps < 1) throw UsageError("steps must be at least 1, got " + std::to_string(r.steps));
  // As validation.steps: a schedule of 1000 training timesteps has no more distinct steps.
  if (r.steps > 1000) throw UsageError("steps must be at most 1000, got " + std::to_string(r.steps));
  if (r.images_per_prompt < 1 || r.images_per_prompt > kMaxImagesPerPrompt) {
    throw UsageError("images per prompt must be from 1 to " + std::to_string(kMaxImagesPerPrompt) + ", got " +
                     std::to_string(r.images_per_prompt));
  }
  if (r.batch_size < 1) throw UsageError("batch size must be at least 1, got " + std::to_string(r.batch_size));
  if (!(r.guidance_scale >= 0 && r.guidance_scale <= kMaxGuidanceScale)) {
    throw UsageError("guidance scale must be a number from 0 to " +
                     std::to_string(static_cast<long long>(kMaxGuidanceScale)) + ", got " +
                     util::format_number(r.guidance_scale));
  }
  model::SchedulerConfig probe;
  sampling::make_sampler(r.scheduler, probe);  // throws for an unknown name
}

void require_finite_images(const std::vector<GeneratedImage>& images, const GenerationRequest& r,
                           const std::string& cause) {
  for (const auto& img : images) {
    if (img.finite) continue;
    throw Error("image " + std::to_string(img.image_index) + " of prompt " + util::quoted(r.prompts[img.prompt_index]) +
                    " (seed " + std::to_string(img.seed) + ") came out as NaN or infinity: " + cause,
                "nothing of it was written");
  }
}

std::optional<std::string> truncation_warning(const text::ClipTokenizer& tokenizer, const std::string& prompt) {
  const std::size_t room = tokenizer.model_max_length() - 2;
  const std::size_t tokens = tokenizer.encode(prompt).size();
  if (tokens <= room) return std::nullopt;
  return "prompt " + util::quoted(prompt) + " is " +  // quoted cuts a long prompt, at a character
         std::to_string(tokens) + " CLIP tokens; only the first " + std::to_string(room) + " are used";
}

std::uint64_t image_seed(const GenerationRequest& r, std::size_t prompt_index, std::int64_t image_index) {
  return r.seed + static_cast<std::uint64_t>(prompt_index) * static_cast<std::uint64_t>(r.images_per_prompt) +
         static_cast<std::uint64_t>(image_index);
}

namespace {

void check_tokenizer_fits(const text::ClipTokenizer& tokenizer, const std::filesystem::path& tokenizer_dir,
                          const std::string& encoder, const model::ClipTextConfig& config) {
  // A sequence longer than the encoder's position embeddings would fail deep inside LibTorch.
  if (static_cast<std::int64_t>(tokenizer.model_max_length()) > config.max_position_embeddings) {
    throw Error("'" + (tokenizer_dir / "tokenizer_config.json").string() + "': model_max_length " +
                    std::to_string(tokenizer.model_max_length()) + " is more than " + encoder +
                    "'s max_position_embeddings " + std::to_string(config.max_position_embeddings),
                "the tokenizer and the text encoder do not belong together (SDXL's both say 77)");
  }
  // Ids past a text encoder's embedding would fail deep inside LibTorch ("index out of range").
  const std::int64_t vocab_size = config.vocab_size;
  if (tokenizer.max_id() < vocab_size) return;
  throw Error("'" + (tokenizer_dir / "vocab.json").string() + "': token id " + std::to_string(tokenizer.max_id()) +
                  " is outside " + encoder + "'s vocabulary of " + std::to_string(vocab_size) +
                  " (its config.json vocab_size)",
              "the tokenizer and the text encoder do not belong together");
}

}  // namespace

void check_tokenizers(const text::ClipTokenizer& tokenizer, const text::ClipTokenizer& tokenizer_2,
                      const std::filesystem::path& dir, const std::filesystem::path& dir_2,
                      const model::ClipTextConfig& encoder, const model::ClipTextConfig& encoder_2) {
  check_tokenizer_fits(tokenizer, dir, "text_encoder", encoder);
  check_tokenizer_fits(tokenizer_2, dir_2, "text_encoder_2", encoder_2);
  // SDXL joins the two encoders' outputs token by token: the sequences must be one length.
  if (tokenizer.model_max_length() != tokenizer_2.model_max_length()) {
    throw Error("'" + (dir_2 / "tokenizer_config.json").string() + "': model_max_length " +
                    std::to_string(tokenizer_2.model_max_length()) + " differs from the " +
                    std::to_string(tokenizer.model_max_length()) + " of '" + dir.string() + "'",
                "SDXL concatenates both text encoders' outputs per token; both tokenizers say 77");
  }
}

SdxlPipeline SdxlPipeline::load(const PipelineOptions& o) {
  SdxlPipeline p;
  p.options = o;
  const model::PipelineFolder folder = model::open_pipeline(o.model, o.revision);
  model::ComponentLoadOptions lo;
  lo.variant = o.variant;
  lo.dtype = o.dtype;
  lo.device = o.device;
  p.unet = model::load_unet(folder.component("unet"), lo);
  model::ComponentLoadOptions vae_lo = lo;
  if (o.vae_dtype) vae_lo.dtype = *o.vae_dtype;
  p.vae = model::load_vae(o.vae ? model::resolve_component_dir(*o.vae, o.revision, "vae") : folder.component("vae"),
                          vae_lo);
  p.text_encoder = model::load_text_encoder(folder.component("text_encoder"), lo);
  p.text_encoder_2 = model::load_text_encoder(folder.component("text_encoder_2"), lo);
  p.tokenizer.emplace(text::ClipTokenizer::load(folder.component("tokenizer")));
  p.tokenizer_2.emplace(text::ClipTokenizer::load(folder.component("tokenizer_2")));
  check_tokenizers(*p.tokenizer, *p.tokenizer_2, folder.component("tokenizer"), folder.component("tokenizer_2"),
                   p.text_encoder->config(), p.text_encoder_2->config());
  p.scheduler_config = model::SchedulerConfig::load(folder.component("scheduler") / "scheduler_config.json");
  util::require_regular_file((folder.root / "model_index.json").string());
  std::ifstream in(folder.root / "model_index.json");
  const auto index = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (index.is_object() && index.contains("force_zeros_for_empty_prompt") &&
      index["force_zeros_for_empty_prompt"].is_boolean()) {
    p.force_zeros_for_empty_prompt = index["force_zeros_for_empty_prompt"].get<bool>();
  }
  return p;
}

nn::PromptEmbeddings SdxlPipeline::encode(const std::string& prompt) {
  if (auto it = prompt_cache.find(prompt); it != prompt_cache.end()) return it->second;
  if (!text_encoder || !text_encoder_2) {
    throw Error("internal: prompt " + util::quoted(prompt) + " was not encoded before the text encoders were released");
  }
  torch::NoGradGuard no_grad;
  const auto ids = [&](const text::ClipTokenizer& tok) {
    return torch::tensor(tok.tokenize(prompt), torch::kLong).unsqueeze(0).to(options.device);
  };
  return nn::encode_prompt(text_encoder, text_encoder_2, ids(*tokenizer), ids(*tokenizer_2));
}

void SdxlPipeline::add_tokens(const text::TokenAbstractions& abstractions, torch::Tensor clip_l,
                              torch::Tensor clip_g) {
  if (!text_encoder || !text_encoder_2) throw Error("internal: add_tokens after the text encoders were released");
  const auto n = static_cast<std::int64_t>(abstractions.tokens().size());
  const auto check = [&](const torch::Tensor& rows, const nn::ClipTextModel& encoder, const char* name,
                         const char* key) {
    const std::int64_t hidden = encoder->config().hidden_size;
    if (rows.dim() != 2 || rows.size(0) != n || rows.size(1) != hidden) {
      throw Error(std::string("token embeddings \"") + key + "\" have shape " + util::shape_string(rows.sizes().vec()) +
                      "; " + name + " needs [" + std::to_string(n) + ", " + std::to_string(hidden) + "]",
                  "were they trained for another base model?");
    }
  };
  check(clip_l, text_encoder, "text_encoder", "clip_l");
  check(clip_g, text_encoder_2, "text_encoder_2", "clip_g");
  const std::int64_t first = tokenizer->add_tokens(abstractions);
  const std::int64_t first_2 = tokenizer_2->add_tokens(abstractions);
  text_encoder->text_model->embeddings->set_added_tokens(first, std::move(clip_l));
  text_encoder_2->text_model->embeddings->set_added_tokens(first_2, std::move(clip_g));
  prompt_cache.clear();
}

void SdxlPipeline::set_added_tokens_enabled(bool enabled) {
  if (!tokenizer || tokenizer->abstractions().empty()) return;
  tokenizer->set_added_tokens_enabled(enabled);
  tokenizer_2->set_added_tokens_enabled(enabled);
  prompt_cache.clear();
}

void SdxlPipeline::cache_prompts(const std::vector<std::string>& prompts) {
  for (const auto& prompt : prompts) {
    if (!prompt_cache.count(prompt)) prompt_cache.emplace(prompt, encode(prompt));
  }
}

void SdxlPipeline::release_text_encoders() {
  text_encoder = nullptr;
  text_encoder_2 = nullptr;
}

void SdxlPipeline::set_lora_scale(double scale) {
  const auto module = [](auto& holder) -> torch::nn::Module* { return holder.is_empty() ? nullptr : holder.get(); };
  for (torch::nn::Module* m : {module(unet), module(text_encoder), module(text_encoder_2)}) {
    if (!m) continue;  // text encoders released after their prompts were cached
    for (const auto& item : m->named_modules("", false)) {
      if (auto lin = std::dynamic_pointer_cast<nn::LoraCompatibleLinearImpl>(item.value())) lin->lora_scale = scale;
    }
  }
}

std::vector<GeneratedImage> SdxlPipeline::generate(const GenerationRequest& r,
                                                   const std::vector<std::pair<std::size_t, std::int64_t>>& which_in,
                                                   const std::function<void(std::int64_t, std::int64_t)>& on_step) {
  validate(r);
  torch::NoGradGuard no_grad;
  std::vector<std::pair<std::size_t, std::int64_t>> which = which_in;
  if (which.empty()) {
    for (std::size_t p = 0; p < r.prompts.size(); ++p) {
      for (std::int64_t k = 0; k < r.images_per_prompt; ++k) which.emplace_back(p, k);
    }
  }
  const bool cfg = r.guidance_scale > 1.0;
  const auto dtype = options.dtype;
  const auto dev = options.device;
  // The negative branch: zeros for an empty negative prompt (force_zeros_for_empty_prompt).
  nn::PromptEmbeddings negative;
  if (cfg) {
    if (r.negative_prompt.empty() && force_zeros_for_empty_prompt) {
      const auto probe = encode("");
      negative = {torch::zeros_like(probe.prompt_embeds), torch::zeros_like(probe.pooled_prompt_embeds)};
    } else {
      negative = encode(r.negative_prompt);
    }
  }
  // SDXL's micro-conditioning: original size, crop top-left (0, 0), target size.
  const auto h = static_cast<float>(r.height), w = static_cast<float>(r.width);
  const torch::Tensor time_ids = torch::tensor({h, w, 0.f, 0.f, h, w}).unsqueeze(0).to(dev, dtype);
  const std::int64_t latent_channels = vae->config().latent_channels;
  const std::int64_t total = static_cast<std::int64_t>(which.size()) * r.steps;
  std::int64_t done = 0;
  std::vector<GeneratedImage> images;
  std::map<std::size_t, nn::PromptEmbeddings> encoded;  // each prompt through the encoders once
  for (std::size_t first = 0; first < which.size(); first += static_cast<std::size_t>(r.batch_size)) {
    const std::size_t n = std::min(which.size() - first, static_cast<std::size_t>(r.batch_size));
    // The batch: conditional rows after the unconditional ones, as diffusers concatenates.
    std::vector<torch::Tensor> embeds, pooled, noise;
    std::vector<GeneratedImage> batch(n);
    for (std::size_t j = 0; j < n; ++j) {
      const auto [p, k] = which[first + j];
      auto it = encoded.find(p);
      if (it == encoded.end()) it = encoded.emplace(p, encode(r.prompts.at(p))).first;
      const nn::PromptEmbeddings& positive = it->second;
      embeds.push_back(positive.prompt_embeds);
      pooled.push_back(positive.pooled_prompt_embeds);
      batch[j].prompt_index = p;
      batch[j].image_index = k;
      batch[j].seed = image_seed(r, p, k);
      // Noise on the CPU from this image's own seed: the same on every device and rank count.
      auto gen = at::detail::createCPUGenerator(batch[j].seed);
      noise.push_back(at::randn({1, latent_channels, r.height / 8, r.width / 8}, gen,
                                torch::TensorOptions().dtype(torch::kFloat)));
    }
    const auto rows = static_cast<std::int64_t>(n);
    torch::Tensor cond = torch::cat(embeds), cond_pooled = torch::cat(pooled), ids = time_ids.expand({rows, -1});
    if (cfg) {
      cond = torch::cat({negative.prompt_embeds.expand({rows, -1, -1}), cond});
      cond_pooled = torch::cat({negative.pooled_prompt_embeds.expand({rows, -1}), cond_pooled});
      ids = time_ids.expand({2 * rows, -1});
    }
    cond = cond.to(dtype);
    cond_pooled = cond_pooled.to(dtype);
    ids = ids.contiguous();
    auto sampler = sampling::make_sampler(r.scheduler, scheduler_config);
    sampler->set_timesteps(r.steps);
    torch::Tensor latents = util::to_device_async(torch::cat(noise) * sampler->init_noise_sigma(), dev);
    // All timesteps in one upload that does not wait for the device: a per-step .to(cuda) would
    // drain the GPU's queue every step and keep the host from queueing the next one meanwhile.
    const std::vector<double>& steps = sampler->timesteps();
    const torch::Tensor timesteps =
        util::to_device_async(torch::tensor(std::vector<float>(steps.begin(), steps.end()), torch::kFloat), dev);
    for (std::size_t i = 0; i < steps.size(); ++i) {
      torch::Tensor in = sampler->scale_model_input(latents, i);
      if (cfg) in = torch::cat({in, in});
      const torch::Tensor t = timesteps[static_cast<std::int64_t>(i)];
      torch::Tensor eps = unet(in.to(dtype), t, cond, cond_pooled, ids).to(torch::kFloat);
      if (cfg) {
        auto parts = eps.chunk(2);
        eps = parts[0] + r.guidance_scale * (parts[1] - parts[0]);
      }
      latents = sampler->step(eps, i, latents);
      done += rows;
      if (on_step) on_step(done, total);
    }
    // One image at a time through the VAE (its full-resolution activations dwarf the UNet's).
    const auto& vc = vae->config();
    const auto vae_dtype = vae->decoder->conv_in->weight.scalar_type();
    for (std::size_t j = 0; j < n; ++j) {
      torch::Tensor z = unscaled_latents(latents.narrow(0, static_cast<std::int64_t>(j), 1), vc);
      batch[j].finite = torch::isfinite(z).all().item<bool>();
      if (vc.shift_factor) z = z + *vc.shift_factor;
      torch::Tensor image = vae->decode(z.to(vae_dtype)).to(torch::kFloat);  // decode upcasts itself when needed
      image = (image / 2 + 0.5).clamp(0, 1);
      batch[j].rgb = (image[0].permute({1, 2, 0}) * 255).round().to(torch::kUInt8).to(torch::kCPU).contiguous();
      images.push_back(std::move(batch[j]));
    }
  }
  return images;
}

// Every rank's images on rank 0, in (prompt, image) order; other ranks get an empty list.
std::vector<pipeline::GeneratedImage> gather_images(std::vector<pipeline::GeneratedImage> images,
                                                    dist::HostCollectives& comm, const pipeline::GenerationRequest& req) {
  {  // at every world size: one rank runs the calls N ranks run
    std::vector<torch::Tensor> rgb;
    std::vector<std::int64_t> ids;
    for (const auto& img : images) {
      rgb.push_back(img.rgb);
      ids.insert(ids.end(), {static_cast<std::int64_t>(img.prompt_index), img.image_index,
                             static_cast<std::int64_t>(img.seed)});
    }
    const torch::Tensor all_rgb = comm.all_gather_rows(
        rgb.empty() ? torch::empty({0, req.height, req.width, 3}, torch::kByte) : torch::stack(rgb), "gather of images");
    const torch::Tensor all_ids =
        comm.all_gather_rows(torch::tensor(ids, torch::kLong).view({-1, 3}), "gather of image ids");
    images.clear();
    if (comm.rank() != 0) return images;
    for (std::int64_t n = 0; n < all_rgb.size(0); ++n) {
      pipeline::GeneratedImage img;
      img.prompt_index = static_cast<std::size_t>(all_ids[n][0].item<std::int64_t>());
      img.image_index = all_ids[n][1].item<std::int64_t>();
      img.seed = static_cast<std::uint64_t>(all_ids[n][2].item<std::int64_t>());
      img.rgb = all_rgb[n].contiguous();
      images.push_back(std::move(img));
    }
  }
  std::sort(images.begin(), images.end(), [](const auto& a, const auto& b) {
    return std::make_pair(a.prompt_index, a.image_index) < std::make_pair(b.prompt_index, b.image_index);
  });
  return images;
}

}  // namespace sdxl::pipeline
