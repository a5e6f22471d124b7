// Seconds per image of SDXL text-to-image (the code path of `generate` and of validation).
//   bench_generate MODEL_DIR [--size 256] [--steps 4] [--images 2] [--guidance 5] [--scheduler dpmpp2m]
//                  [--no-warmup]
//   bench_generate MODEL_DIR --full-size MANIFEST_DIR [same options]
// MODEL_DIR: a pipeline folder (tiny-sdxl, or `sdxl-dreambooth init-tiny`'s). With --full-size the
// networks are SDXL base 1.0's full-size architecture built from the real configs in
// MANIFEST_DIR (unet.config.json, vae.config.json; the CLIP configs are ViT-L/14 and
// OpenCLIP bigG/14) with random weights, and MODEL_DIR only lends its tokenizers and scheduler.
// Prints load/build time, seconds per image (after one warm-up image unless --no-warmup: the
// full-size model on a CPU takes minutes per image) and peak RSS.
#include "sdxl_dreambooth/model/clip_text_config.h"
#include "sdxl_dreambooth/model/json_config.h"
#include "sdxl_dreambooth/model/scheduler_config.h"
#include "sdxl_dreambooth/model/unet_config.h"
#include "sdxl_dreambooth/model/vae_config.h"
#include "sdxl_dreambooth/pipeline/sdxl_pipeline.h"
#include "sdxl_dreambooth/util/memory_usage.h"
#include "sdxl_dreambooth/util/strings.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

using namespace sdxl;
namespace fs = std::filesystem;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

model::ClipTextConfig clip_config(const char* json) {
  return model::ClipTextConfig::from_json(model::JsonConfig(nlohmann::json::parse(json), "bench"));
}

pipeline::SdxlPipeline full_size(const fs::path& model_dir, const fs::path& manifest) {
  torch::manual_seed(0);
  pipeline::SdxlPipeline p;
  p.unet = nn::UNet2DConditionModel(model::UNetConfig::load(manifest / "unet.config.json"));
  p.vae = nn::AutoencoderKL(model::VaeConfig::load(manifest / "vae.config.json"));
  p.text_encoder = nn::ClipTextModel(clip_config(R"({
    "architectures": ["CLIPTextModel"], "hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
    "num_hidden_layers": 12, "hidden_act": "quick_gelu", "projection_dim": 768})"));
  p.text_encoder_2 = nn::ClipTextModel(clip_config(R"({
    "architectures": ["CLIPTextModelWithProjection"], "hidden_size": 1280, "intermediate_size": 5120,
    "num_attention_heads": 20, "num_hidden_layers": 32, "hidden_act": "gelu", "projection_dim": 1280})"));
  for (torch::nn::Module* m : {static_cast<torch::nn::Module*>(p.unet.get()), static_cast<torch::nn::Module*>(p.vae.get()),
                               static_cast<torch::nn::Module*>(p.text_encoder.get()),
                               static_cast<torch::nn::Module*>(p.text_encoder_2.get())}) {
    m->eval();
  }
  p.tokenizer.emplace(text::ClipTokenizer::load(model_dir / "tokenizer"));
  p.tokenizer_2.emplace(text::ClipTokenizer::load(model_dir / "tokenizer_2"));
  p.scheduler_config = model::SchedulerConfig::load(model_dir / "scheduler" / "scheduler_config.json");
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_generate MODEL_DIR [--full-size MANIFEST_DIR] [--size 256] [--steps 4] "
                         "[--images 2] [--guidance 5] [--scheduler dpmpp2m]\n");
    return 2;
  }
  const fs::path model_dir = argv[1];
  std::string manifest, scheduler = "dpmpp2m";
  long size = 256, steps = 4, images = 2;
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
      if (!manifest.empty()) return full_size(model_dir, manifest);
      pipeline::PipelineOptions o;
      o.model = model_dir.string();
      return pipeline::SdxlPipeline::load(o);
    }();
    std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines appear in logs as they are printed
    std::printf("%s pipeline ready in %.1f s; %dx%d, %ld steps, guidance %.1f, %s, %d intra-op thread(s)\n",
                manifest.empty() ? model_dir.c_str() : "full-size SDXL (random weights)", now() - t0, int(size),
                int(size), steps, guidance, scheduler.c_str(), at::get_num_threads());
    pipeline::GenerationRequest r;
    r.prompts = {"a photo of sks dog at the beach"};
    r.steps = steps;
    r.guidance_scale = guidance;
    r.width = r.height = size;
    r.scheduler = scheduler;
    r.images_per_prompt = 1 + images;  // image 0 warms up
    if (warmup) pipe.generate(r, {{0, 0}});
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
