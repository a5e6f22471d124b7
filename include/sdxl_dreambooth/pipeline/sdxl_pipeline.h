// SDXL text-to-image (diffusers StableDiffusionXLPipeline.__call__): both tokenizers and
// text encoders, zero negative embeddings for an empty negative prompt
// (force_zeros_for_empty_prompt), classifier-free guidance, SDXL's size/crop time ids, a
// sampler loop and the VAE decode. The same code serves `generate` and validation images.
#pragma once

#include "sdxl_dreambooth/dist/host_collectives.h"
#include "sdxl_dreambooth/model/clip_text_config.h"
#include "sdxl_dreambooth/model/component_loader.h"
#include "sdxl_dreambooth/model/scheduler_config.h"
#include "sdxl_dreambooth/nn/prompt_encoding.h"
#include "sdxl_dreambooth/text/clip_tokenizer.h"

#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace sdxl::pipeline {

struct PipelineOptions {
  std::string model;                 // folder or hub id
  std::optional<std::string> vae;    // separate VAE folder or hub id
  std::optional<std::string> variant;
  std::string revision = "main";
  torch::Dtype dtype = torch::kFloat;
  std::optional<torch::Dtype> vae_dtype;  // unset: dtype (training keeps the VAE in float32)
  torch::Device device = torch::kCPU;
};

struct GenerationRequest {
  std::vector<std::string> prompts;
  std::string negative_prompt;
  std::int64_t steps = 25;
  double guidance_scale = 5.0;  // <= 1 disables the unconditional pass
  std::uint64_t seed = 0;
  std::int64_t width = 1024, height = 1024;
  std::int64_t images_per_prompt = 1;
  std::string scheduler = "dpmpp2m";
  // Images per UNet call (each counts twice with guidance); see generation_batches.h for how
  // the images are cut into batches, and activation_memory.h for sizing them.
  std::int64_t batch_size = 1;
};

struct GeneratedImage {
  std::size_t prompt_index = 0;
  std::int64_t image_index = 0;  // within its prompt
  std::uint64_t seed = 0;        // the seed of this image's noise
  torch::Tensor rgb;             // [H, W, 3] uint8, CPU
  bool finite = true;            // false: the sampled latents held NaN or infinity (an overflow; rgb is garbage)
};

// An Error when any of `images` is not finite, naming the first and what overflows (`cause`).
void require_finite_images(const std::vector<GeneratedImage>& images, const GenerationRequest& request,
                           const std::string& cause);

// Every image is held until all are written: a bound well above any real use.
inline constexpr std::int64_t kMaxImagesPerPrompt = 10000;
// Beyond a few hundred the guided prediction overflows float to a black picture.
inline constexpr double kMaxGuidanceScale = 1000;

// Checks a request (sizes multiples of 8, steps >= 1, batch size >= 1, known scheduler, prompts given) and
// throws UsageError naming the bad value.
void validate(const GenerationRequest& request);

// The seed of image k of prompt p: seed + p * images_per_prompt + k, so an image does not
// depend on how many ranks share the work or on the batch it was drawn in.
std::uint64_t image_seed(const GenerationRequest& request, std::size_t prompt_index, std::int64_t image_index);

// Every rank's images on rank 0, sorted by (prompt, image); the other ranks get an empty list.
// Used when ranks split the images of a request (generate under mpirun, validation).
std::vector<GeneratedImage> gather_images(std::vector<GeneratedImage> images, dist::HostCollectives& comm,
                                          const GenerationRequest& request);

// As diffusers warns: CLIP reads BOS, model_max_length - 2 tokens and EOS, the rest of a
// longer prompt is cut. The warning's text, or nothing when the prompt fits.
std::optional<std::string> truncation_warning(const text::ClipTokenizer& tokenizer, const std::string& prompt);

// The two tokenizers against their text encoders, an Error naming the file: ids within each
// encoder's vocab_size (vocab.json), model_max_length within its max_position_embeddings, and
// one model_max_length for both (SDXL joins the encoders' outputs token by token).
void check_tokenizers(const text::ClipTokenizer& tokenizer, const text::ClipTokenizer& tokenizer_2,
                      const std::filesystem::path& dir, const std::filesystem::path& dir_2,
                      const model::ClipTextConfig& encoder, const model::ClipTextConfig& encoder_2);

class SdxlPipeline {
 public:
  static SdxlPipeline load(const PipelineOptions& options);

  // Generates the images (prompt_index, image_index) listed in `which` (all when empty),
  // request.batch_size consecutive images per UNet call (the last call may take fewer), and
  // decodes them one at a time; `on_step(done, total)` reports image steps.
  std::vector<GeneratedImage> generate(const GenerationRequest& request,
                                       const std::vector<std::pair<std::size_t, std::int64_t>>& which = {},
                                       const std::function<void(std::int64_t, std::int64_t)>& on_step = {});

  // Embeddings of `prompt` from prompt_cache, else from the text encoders (an Error when they
  // have been released).
  nn::PromptEmbeddings encode(const std::string& prompt);
  // Encodes the prompts into prompt_cache, so the text encoders can be released (training
  // keeps validation prompts this way).
  void cache_prompts(const std::vector<std::string>& prompts);
  void release_text_encoders();
  // The run-time scale of every adapter in the UNet and the text encoders (0 = the base model).
  void set_lora_scale(double scale);
  // Pivotal tuning: both tokenizers gain the abstractions' tokens, both text encoders read
  // their rows from `clip_l` / `clip_g` [tokens, hidden] (kept as given: trained tensors stay
  // shared). An Error when the shapes do not fit this model's text encoders.
  void add_tokens(const text::TokenAbstractions& abstractions, torch::Tensor clip_l, torch::Tensor clip_g);
  // While false, prompts are read as by the base model (no rewrite, no new tokens).
  void set_added_tokens_enabled(bool enabled);

  nn::UNet2DConditionModel unet{nullptr};
  nn::AutoencoderKL vae{nullptr};
  nn::ClipTextModel text_encoder{nullptr}, text_encoder_2{nullptr};
  std::optional<text::ClipTokenizer> tokenizer, tokenizer_2;
  model::SchedulerConfig scheduler_config;
  bool force_zeros_for_empty_prompt = true;
  PipelineOptions options;
  std::map<std::string, nn::PromptEmbeddings> prompt_cache;
};

}  // namespace sdxl::pipeline
