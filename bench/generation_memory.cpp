// Measured against estimated activation memory of generation (what --batch-size auto sizes
// batches with, src/pipeline/activation_memory.cpp): one no-grad UNet forward on a batch, and
// one VAE decode, each its own peak-RSS window on the CPU.
//   bench_generation_memory MODEL_DIR [--full-size MANIFEST_DIR] [--size 256] [--batch-size 1]
//                           [--guidance 5]
// Prints, for the UNet batch and for one decode, the estimate, the measured rise of peak RSS
// over the RSS before the call, and their ratio (the estimate should stay above).
#include "sdxl_dreambooth/pipeline/random_weights_pipeline.h"

#include "sdxl_dreambooth/pipeline/generation_batches.h"
#include "sdxl_dreambooth/pipeline/sdxl_pipeline.h"
#include "sdxl_dreambooth/util/memory_usage.h"
#include "sdxl_dreambooth/util/openblas_kernels.h"
#include "sdxl_dreambooth/util/strings.h"

#include <cstdio>
#include <string>

using namespace sdxl;
namespace fs = std::filesystem;

namespace {

void report(const char* what, double estimate, double measured) {
  std::printf("%-28s estimate %10s   measured %10s   measured/estimate %.2f\n", what,
              util::format_bytes(estimate).c_str(), util::format_bytes(measured).c_str(), measured / estimate);
}

}  // namespace

int main(int argc, char** argv) {
  sdxl::util::use_best_openblas_kernels();  // as the program does: see util/openblas_kernels.h
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_generation_memory MODEL_DIR [--full-size MANIFEST_DIR] [--size 256] "
                         "[--batch-size 1] [--guidance 5]\n");
    return 2;
  }
  const fs::path model_dir = argv[1];
  std::string manifest;
  long size = 256, batch = 1;
  double guidance = 5.0;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--full-size") manifest = argv[i + 1];
    else if (a == "--size") size = std::stol(argv[i + 1]);
    else if (a == "--batch-size") batch = std::stol(argv[i + 1]);
    else if (a == "--guidance") guidance = std::stod(argv[i + 1]);
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  try {
    pipeline::SdxlPipeline pipe = [&] {
      pipeline::PipelineOptions o;
      o.model = model_dir.string();
      if (!manifest.empty()) return pipeline::random_weights_pipeline(o, manifest);
      return pipeline::SdxlPipeline::load(o);
    }();
    torch::NoGradGuard no_grad;
    pipeline::GenerationRequest r;
    r.prompts = {"a photo of sks dog"};
    r.width = r.height = size;
    r.guidance_scale = guidance;
    r.images_per_prompt = batch;
    const auto sizing = pipeline::size_batches(pipe, r, 1e18);
    const auto e = pipe.encode(r.prompts[0]);
    const std::int64_t rows = batch * (guidance > 1.0 ? 2 : 1);
    const auto& uc = pipe.unet->config();
    const torch::Tensor latents = torch::randn({rows, uc.in_channels, size / 8, size / 8});
    const torch::Tensor embeds = e.prompt_embeds.expand({rows, -1, -1}).contiguous();
    const torch::Tensor pooled = e.pooled_prompt_embeds.expand({rows, -1}).contiguous();
    const auto s = static_cast<float>(size);
    const torch::Tensor ids = torch::tensor({s, s, 0.f, 0.f, s, s}).unsqueeze(0).expand({rows, -1}).contiguous();
    std::printf("%s, %ldx%ld, batch %ld (%lld UNet rows), fp32, %d intra-op thread(s)\n",
                manifest.empty() ? model_dir.c_str() : "full-size SDXL (random weights)", size, size, batch,
                static_cast<long long>(rows), at::get_num_threads());
    // The decode first, on a heap the UNet has not yet fragmented.
    if (!util::reset_peak_rss()) throw std::runtime_error("cannot reset the peak RSS (/proc/self/clear_refs)");
    double before = static_cast<double>(util::rss_bytes());
    const torch::Tensor image = pipe.vae->decode(torch::randn({1, pipe.vae->config().latent_channels, size / 8, size / 8}));
    double peak = static_cast<double>(util::peak_rss_bytes());
    report("VAE decode (one image)", sizing.vae_bytes, peak - before);
    util::reset_peak_rss();
    before = static_cast<double>(util::rss_bytes());
    const torch::Tensor eps = pipe.unet(latents, torch::tensor(500.f), embeds, pooled, ids);
    peak = static_cast<double>(util::peak_rss_bytes());
    report("UNet forward (batch)", sizing.unet_bytes(batch), peak - before);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
