// Seconds per image of SDXL text-to-image (the code path of `generate` and of validation).
//   bench_generate MODEL_DIR [--size 256] [--steps 4] [--images 2] [--guidance 5] [--scheduler dpmpp2m]
//                  [--batch-size 1] [--no-warmup]
//   bench_generate MODEL_DIR --full-size MANIFEST_DIR [same options]
// MODEL_DIR: a pipeline folder (tiny-sdxl, or `sdxl-dreambooth init-tiny`'s). With --full-size the
// networks are SDXL base 1.0's full-size architecture built from the real configs in
// MANIFEST_DIR (unet.config.json, vae.config.json; the CLIP configs are ViT-L/14 and
// OpenCLIP bigG/14) with random weights, and MODEL_DIR only lends its tokenizers and scheduler.
// Prints load/build time, seconds per image (after one warm-up image unless --no-warmup: the
// full-size model on a CPU takes minutes per image) and peak RSS.
#include "sdxl_dreambooth/pipeline/random_weights_pipeline.h"

#include "sdxl_dreambooth/pipeline/sdxl_pipeline.h"
#include "sdxl_dreambooth/util/memory_usage.h"
#include "sdxl_dreambooth/util/openblas_kernels.h"
#include "sdxl_dreambooth/util/strings.h"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

using namespace sdxl;
namespace fs = std::filesystem;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

}  // namespace

int main(int argc, char** argv) {
  sdxl::util::use_best_openblas_kernels();  // as the program does: see util/openblas_kernels.h
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_generate MODEL_DIR [--full-size MANIFEST_DIR] [--size 256] [--steps 4] "
                         "[--images 2] [--batch-size 1] [--guidance 5] [--scheduler dpmpp2m] [--no-warmup]\n");
    return 2;
  }
  const fs::path model_dir = argv[1];
  std::string manifest, scheduler = "dpmpp2m";
  long size = 256, steps = 4, images = 2, batch = 1;
  double guidance = 5.0;
  bool warmup = true;
  for (int i = 2; i < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--no-warmup") {
      warmup = false;
      --i;
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "%s needs a value\n", a.c_str());
      return 2;
    }
    if (a == "--full-size") manifest = argv[i + 1];
    else if (a == "--size") size = std::stol(argv[i + 1]);
    else if (a == "--steps") steps = std::stol(argv[i + 1]);
    else if (a == "--images") images = std::stol(argv[i + 1]);
    else if (a == "--batch-size") batch = std::stol(argv[i + 1]);
    else if (a == "--guidance") guidance = std::stod(argv[i + 1]);
    else if (a == "--scheduler") scheduler = argv[i + 1];
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  try {
    const double t0 = now();
    pipeline::SdxlPipeline pipe = [&] {
      pipeline::PipelineOptions o;
      o.model = model_dir.string();
      if (!manifest.empty()) return pipeline::random_weights_pipeline(o, manifest);
      return pipeline::SdxlPipeline::load(o);
    }();
    std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines appear in logs as they are printed
    std::printf("%s pipeline ready in %.1f s; %dx%d, %ld steps, guidance %.1f, %s, batch %ld, %d intra-op thread(s)\n",
                manifest.empty() ? model_dir.c_str() : "full-size SDXL (random weights)", now() - t0, int(size),
                int(size), steps, guidance, scheduler.c_str(), batch, at::get_num_threads());
    pipeline::GenerationRequest r;
    r.prompts = {"a photo of sks dog at the beach"};
    r.steps = steps;
    r.guidance_scale = guidance;
    r.width = r.height = size;
    r.scheduler = scheduler;
    r.images_per_prompt = 1 + images;  // image 0 warms up
    if (warmup) pipe.generate(r, {{0, 0}});
    r.batch_size = batch;
    const double t1 = now();
    std::vector<std::pair<std::size_t, std::int64_t>> which;
    for (long k = 1; k <= images; ++k) which.emplace_back(0, k);
    pipe.generate(r, which);
    const double per_image = (now() - t1) / static_cast<double>(images);
    std::printf("%.3f s per image (mean of %ld%s), %.3f s per denoising step; peak RSS %s\n", per_image, images,
                warmup ? " after a warm-up image" : ", no warm-up", per_image / static_cast<double>(steps),
                util::format_bytes(static_cast<double>(util::peak_rss_bytes())).c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
