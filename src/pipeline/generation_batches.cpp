#include "sdxl_dreambooth/pipeline/generation_batches.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/nn/attention.h"
#include "sdxl_dreambooth/torch_compat.h"

namespace sdxl::pipeline {

std::vector<std::vector<ImageRef>> plan_batches(const GenerationRequest& r) {
  if (r.batch_size < 1) throw UsageError("batch size must be at least 1, got " + std::to_string(r.batch_size));
  std::vector<std::vector<ImageRef>> batches;
  for (std::size_t p = 0; p < r.prompts.size(); ++p) {
    for (std::int64_t k = 0; k < r.images_per_prompt; ++k) {
      if (batches.empty() || static_cast<std::int64_t>(batches.back().size()) == r.batch_size) batches.emplace_back();
      batches.back().emplace_back(p, k);
    }
  }
  return batches;
}

std::vector<ImageRef> rank_share(const std::vector<std::vector<ImageRef>>& batches, int rank, int world) {
  std::vector<ImageRef> mine;
  for (std::size_t j = static_cast<std::size_t>(rank); j < batches.size(); j += static_cast<std::size_t>(world)) {
    mine.insert(mine.end(), batches[j].begin(), batches[j].end());
  }
  return mine;
}

BatchSizing size_batches(const SdxlPipeline& pipe, const GenerationRequest& r, double budget_bytes) {
  const auto& uc = pipe.unet->config();
  AttentionCost attention;
  attention.query_chunk = nn::AttentionOptions{}.query_chunk;
  // Only the CUDA fused kernels are counted on to skip the score matrix; everywhere else the
  // estimate assumes the portable path.
  attention.scores_materialized =
      !(compat::kHasFusedSdpa && pipe.options.device.is_cuda() && !uc.upcast_attention);  // the VAE's too
  BatchSizing s;
  const double samples = r.guidance_scale > 1.0 ? 2.0 : 1.0;
  s.unet_fixed_bytes = unet_forward_fixed_bytes(uc, pipe.options.dtype);
  s.unet_bytes_per_image =
      samples * unet_forward_bytes_per_sample(uc, r.height, r.width, pipe.options.dtype, attention);
  s.vae_bytes = vae_decode_bytes(pipe.vae->config(), r.height, r.width,
                                 pipe.vae->decoder->conv_in->weight.scalar_type(), attention);
  const std::int64_t images = static_cast<std::int64_t>(r.prompts.size()) * r.images_per_prompt;
  s.batch_size = batch_size_for_budget(budget_bytes, s.unet_fixed_bytes, s.unet_bytes_per_image, images);
  s.fits = s.unet_bytes(1) <= budget_bytes && s.vae_bytes <= budget_bytes;
  return s;
}

}  // namespace sdxl::pipeline
