// `generate`: SDXL text-to-image from the command line, PNGs with their settings in text chunks.
#include "sdxl_dreambooth/build_features.h"
#include "sdxl_dreambooth/cli/args.h"
#include "sdxl_dreambooth/cli/command.h"
#include "sdxl_dreambooth/dist/host_collectives.h"
#include "sdxl_dreambooth/dist/mpi_runtime.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/io/label_font.h"
#include "sdxl_dreambooth/io/png_writer.h"
#include "sdxl_dreambooth/model/lora_import.h"
#include "sdxl_dreambooth/nn/lora_linear.h"
#include "sdxl_dreambooth/pipeline/generation_batches.h"
#include "sdxl_dreambooth/pipeline/sdxl_pipeline.h"
#include "sdxl_dreambooth/util/blas_library.h"
#include "sdxl_dreambooth/util/cpu_threads.h"
#include "sdxl_dreambooth/util/host_memory.h"
#include "sdxl_dreambooth/util/strings.h"
#include "sdxl_dreambooth/torch_compat.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>

namespace sdxl::cli {

namespace {

// A generation's ranks meet only to gather images, after drawing theirs: an hour covers the
// slowest rank's share on the CPU.
constexpr double kGenerateTimeoutS = 3600;

std::pair<std::int64_t, std::int64_t> parse_size(const std::string& s) {
  const auto x = s.find('x');
  try {
    if (x != std::string::npos) {
      std::size_t a = 0, b = 0;
      const long long w = std::stoll(s.substr(0, x), &a), h = std::stoll(s.substr(x + 1), &b);
      if (a == x && b == s.size() - x - 1) return {w, h};
    }
  } catch (const std::exception&) {
  }
  throw UsageError("--size: expected WIDTHxHEIGHT such as 1024x1024, got " + util::quoted(s));
}

torch::Dtype parse_dtype(const std::string& s) {
  if (s == "fp32") return torch::kFloat;
  if (s == "bf16") return torch::kBFloat16;
  if (s == "fp16") return torch::kHalf;
  throw UsageError("--dtype: expected fp32, bf16 or fp16, got " + util::quoted(s));
}

// Run-time adapters of every model of the pipeline at `scale` (0 = the base model).
void set_lora_scale(pipeline::SdxlPipeline& pipe, double scale) {
  for (torch::nn::Module* m : {static_cast<torch::nn::Module*>(pipe.unet.get()),
                               static_cast<torch::nn::Module*>(pipe.text_encoder.get()),
                               static_cast<torch::nn::Module*>(pipe.text_encoder_2.get())}) {
    for (const auto& item : m->named_modules("", false)) {
      if (auto lin = std::dynamic_pointer_cast<nn::LoraCompatibleLinearImpl>(item.value())) lin->lora_scale = scale;
    }
  }
}

// One PNG: a row per (prompt, image), base on the left, fine-tuned on the right, white
// gutters; a header names the columns and a caption above each row gives its prompt and seed
// (drawn with FreeType when a font is installed). The same labels are PNG text chunks.
void write_comparison_grid(const std::string& path, const std::vector<pipeline::GeneratedImage>& base,
                           const std::vector<pipeline::GeneratedImage>& tuned, const pipeline::GenerationRequest& req,
                           const std::string& lora, double scale) {
  const int gap = 8, w = static_cast<int>(req.width), h = static_cast<int>(req.height);
  const int rows = static_cast<int>(base.size());
  std::string why;
  const auto font = io::LabelFont::find(std::clamp(w / 20, 10, 36), &why);
  if (!font) std::cerr << "warning: " << path << ": labels only in the PNG text chunks: " << why << "\n";
  const int band = font ? font->line_height() + gap / 2 : 0;  // text height above the images
  const int gw = 2 * w + 3 * gap, gh = band + rows * (h + band) + (rows + 1) * gap;
  std::vector<std::uint8_t> px(static_cast<std::size_t>(gw) * gh * 3, 255);
  const std::string tuned_label = "with LoRA (scale " + util::format_number(scale) + ")";
  io::PngText text{{"columns", "left: base model | right: " + tuned_label + " " + lora}};
  const std::uint8_t ink[3] = {0, 0, 0}, grey[3] = {90, 90, 90};
  if (font) {
    const std::string labels[2] = {font->fit("base model", w), font->fit(tuned_label, w)};
    for (int c = 0; c < 2; ++c) {
      const int x = gap + c * (w + gap) + (w - font->width(labels[c])) / 2;
      font->draw(px.data(), gw, gh, x, gap / 2, labels[c], ink);
    }
  }
  for (int r = 0; r < rows; ++r) {
    const int top = band + gap + r * (h + band + gap) + band;  // first pixel row of the images
    for (int c = 0; c < 2; ++c) {
      const auto& img = (c == 0 ? base : tuned)[static_cast<std::size_t>(r)];
      const auto* src = img.rgb.data_ptr<std::uint8_t>();
      for (int y = 0; y < h; ++y) {
        std::memcpy(&px[(static_cast<std::size_t>(top + y) * gw + gap + c * (w + gap)) * 3],
                    src + static_cast<std::size_t>(y) * w * 3, static_cast<std::size_t>(w) * 3);
      }
    }
    const auto& img = base[static_cast<std::size_t>(r)];
    const std::string caption = req.prompts[img.prompt_index] + " (image " + std::to_string(img.image_index) +
                                ", seed " + std::to_string(img.seed) + ")";
    if (font) font->draw(px.data(), gw, gh, gap, top - band, font->fit(caption, gw - 2 * gap), grey);
    text.emplace_back("row " + std::to_string(r), caption);
  }
  io::write_png(path, px.data(), gw, gh, text);
}

}  // namespace

Command make_generate_command() {
  Command c;
  c.name = "generate";
  c.summary = "SDXL text-to-image: PNGs with prompt, seed and settings in their text chunks";
  c.help =
      "usage: sdxl-dreambooth generate --model DIR_OR_HUB_ID --prompt P [--prompt P]... --out DIR\n"
      "         [--negative N] [--steps 25] [--guidance 5] [--seed 0] [--size 1024x1024]\n"
      "         [--num-images 1] [--scheduler dpmpp2m|euler|euler_karras] [--vae DIR_OR_HUB_ID]\n"
      "         [--batch-size auto|N] [--memory-budget 8]\n"
      "         [--variant fp16] [--revision main] [--dtype fp32|bf16|fp16] [--device cpu|cuda]\n"
      "         [--lora FILE [--lora-scale 1] [--lora-mode merge|runtime] [--compare-base]]\n\n"
      "Writes OUT/<prompt>-<image>-seed<S>.png for every prompt and image. Image k of prompt p\n"
      "uses seed S + p * num-images + k, so the same seed gives the same image on every run.\n"
      "An empty negative prompt gives zero embeddings (SDXL's force_zeros_for_empty_prompt);\n"
      "--guidance 1 disables classifier-free guidance. Progress: a bar on a terminal, one line\n"
      "per image otherwise (Slurm logs).\n\n"
      "--batch-size N draws N images per UNet call (2N rows with guidance), in (prompt, image)\n"
      "order; auto (the default) takes the largest N whose estimated UNet activations fit in\n"
      "--memory-budget GiB (default 8), from the model configs, size and dtype alone, so the\n"
      "choice is the same on every machine. Images are decoded one at a time. An image's pixels\n"
      "depend on its seed and its batch, never on the rank count; batching changes them only\n"
      "by rounding.\n\n"
      "--lora applies a LoRA safetensors file: this program's or diffusers' pytorch_lora_weights\n"
      "(unet.<module>.lora.down/up.weight), peft names (lora_A/lora_B) or kohya names\n"
      "(lora_unet_input_blocks_4_1_... as sd-scripts writes them, or diffusers paths; with\n"
      ".alpha), e.g. from `export --format kohya`. merge folds scale * B A into the\n"
      "weights (no cost per step); runtime keeps the adapters beside them. The number of\n"
      "applied and unused adapters is reported; a file whose adapters match nothing is an error.\n"
      "--compare-base draws every image twice with the same seed, without and with the LoRA, into\n"
      "OUT/base/ and OUT/lora/, plus OUT/compare.png: one row per image, base | fine-tuned, with\n"
      "the column and row labels drawn above the images (FreeType, a font found by fontconfig)\n"
      "and in its PNG text chunks.\n\n"
      "Under mpirun whole batches are dealt to the ranks in turn (batch j to rank j mod ranks)\n"
      "and rank 0 writes the images; the files are the same as a one-process run's. Use a\n"
      "batch size at most images / ranks to keep every rank busy.\n";
  c.run = [](const std::vector<std::string>& argv) {
    Args args(argv, {"--compare-base"},
              {"--model", "--out", "--negative", "--steps", "--guidance", "--seed", "--size", "--num-images",
               "--scheduler", "--vae", "--variant", "--revision", "--dtype", "--device", "--lora", "--lora-scale",
               "--lora-mode", "--batch-size", "--memory-budget"},
              {"--prompt"});
    if (!args.positionals().empty()) throw UsageError("unexpected argument " + util::quoted(args.positionals()[0]));
    const auto model = args.option("--model");
    const auto out = args.option("--out");
    if (!model) throw UsageError("generate needs --model");
    if (!out) throw UsageError("generate needs --out DIR");
    pipeline::GenerationRequest req;
    req.prompts = args.repeated("--prompt");
    req.negative_prompt = args.option_or("--negative", "");
    req.steps = args.int_option("--steps").value_or(25);
    req.guidance_scale = args.float_option("--guidance").value_or(5.0);
    const long long seed = args.int_option("--seed").value_or(0);
    if (seed < 0) throw UsageError("--seed must be >= 0");
    req.seed = static_cast<std::uint64_t>(seed);
    std::tie(req.width, req.height) = parse_size(args.option_or("--size", "1024x1024"));
    req.images_per_prompt = args.int_option("--num-images").value_or(1);
    req.scheduler = args.option_or("--scheduler", "dpmpp2m");
    const std::string batch_arg = args.option_or("--batch-size", "auto");
    if (batch_arg != "auto") {
      char* end = nullptr;
      const long long n = std::strtoll(batch_arg.c_str(), &end, 10);
      if (batch_arg.empty() || *end != '\0' || n < 1 || n > 4096) {
        throw UsageError("--batch-size: expected auto or a whole number from 1 to 4096, got " + util::quoted(batch_arg));
      }
      req.batch_size = n;
    }
    const double budget_gib = args.float_option("--memory-budget").value_or(8.0);
    if (!(budget_gib > 0)) throw UsageError("--memory-budget: expected GiB > 0, got " + util::format_number(budget_gib));
    pipeline::validate(req);  // before the (slow) model load
    const auto lora_path = args.option("--lora");
    const double lora_scale = args.float_option("--lora-scale").value_or(1.0);
    const bool compare_base = args.flag("--compare-base");
    if (compare_base && !lora_path) throw UsageError("--compare-base needs --lora FILE (base vs fine-tuned)");
    if (compare_base && args.option("--lora-mode") && *args.option("--lora-mode") == "merge") {
      throw UsageError("--compare-base keeps the adapters beside the weights (runtime); drop --lora-mode merge");
    }
    // Comparing toggles the adapters between scale 0 and the given scale, so they stay unmerged.
    const std::string lora_mode = compare_base ? "runtime" : args.option_or("--lora-mode", "merge");
    if (lora_mode != "merge" && lora_mode != "runtime") {
      throw UsageError("--lora-mode: expected merge or runtime, got " + util::quoted(lora_mode));
    }
    if (!lora_path && (args.option("--lora-scale") || args.option("--lora-mode"))) {
      throw UsageError("--lora-scale and --lora-mode need --lora FILE");
    }
    std::optional<model::LoraFileContents> lora;
    if (lora_path) lora = model::read_lora_file(*lora_path);  // a bad file fails before the model load

    pipeline::PipelineOptions opts;
    opts.model = *model;
    opts.vae = args.option("--vae");
    opts.variant = args.option("--variant");
    opts.revision = args.option_or("--revision", "main");
    opts.dtype = parse_dtype(args.option_or("--dtype", "fp32"));
    const std::string device = args.option_or("--device", "cpu");
    if (device != "cpu" && device != "cuda") throw UsageError("--device: expected cpu or cuda, got " + util::quoted(device));
    if (device == "cuda" && !torch::cuda::is_available()) {
      throw UsageError("--device cuda: this LibTorch has no CUDA or no GPU is visible");
    }

    dist::MpiRuntime mpi(nullptr, nullptr);
    // Each rank on its node's own GPU (local rank modulo the GPUs it sees), current before
    // anything touches CUDA.
    const int gpu = device == "cuda" ? mpi.local_rank() % std::max(1, static_cast<int>(torch::cuda::device_count())) : 0;
    if (device == "cuda") compat::set_cuda_device(gpu);
    opts.device = device == "cuda" ? torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(gpu))
                                   : torch::Device(torch::kCPU);
    const util::CpuThreads threads = util::configure_cpu_threads(dist::node_affinity_masks(mpi.node(), kGenerateTimeoutS),
                                                                 static_cast<std::size_t>(mpi.local_rank()));
    if (auto w = util::slow_blas_warning(util::blas_library(), opts.device); w && mpi.rank() == 0) {
      std::cerr << "warning: " << *w << "\n";
    }
    util::keep_freed_host_memory(opts.device.is_cpu());  // each denoising step re-allocates the same blocks
    // Generation gathers images (host data) only.
    const auto comm = dist::make_mpi_host_collectives(mpi.world(), kGenerateTimeoutS);
    auto pipe = pipeline::SdxlPipeline::load(opts);
    if (lora) {
      // UNet and, when the file has them, both text encoders.
      std::size_t applied = 0, in_file = 0;
      std::vector<std::string> unused;
      const std::pair<torch::nn::Module*, const std::map<std::string, model::LoraPair>*> parts[] = {
          {pipe.unet.get(), &lora->unet},
          {pipe.text_encoder.get(), &lora->text_encoder},
          {pipe.text_encoder_2.get(), &lora->text_encoder_2}};
      for (const auto& [module, adapters] : parts) {
        if (adapters->empty()) continue;
        const auto report = model::apply_lora(*module, *adapters, *lora_path, lora_scale, lora_mode == "merge");
        applied += report.applied;
        in_file += adapters->size();
        unused.insert(unused.end(), report.unused.begin(), report.unused.end());
      }
      if (applied == 0) {
        throw Error(*lora_path + ": none of its " + std::to_string(in_file) + " adapters matches a projection of " +
                        *model,
                    "is it a LoRA for SDXL, with diffusers module names?");
      }
      std::cerr << "LoRA " << *lora_path << " (" << lora->format << "): " << applied << " adapters "
                << (lora_mode == "merge" ? "merged" : "applied at run time") << " with scale "
                << util::format_number(lora_scale) << ", " << unused.size() << " unused";
      if (!lora->text_encoder.empty() || !lora->text_encoder_2.empty()) {
        std::cerr << " (" << lora->text_encoder.size() + lora->text_encoder_2.size() << " in the text encoders)";
      }
      std::cerr << "\n";
      for (const auto& u : unused) std::cerr << "warning: LoRA module not in the model: " << u << "\n";
    }
    std::error_code ec;  // created only once the model loaded: a bad --model writes nothing
    std::filesystem::create_directories(*out, ec);
    if (ec) throw Error("cannot create output folder '" + *out + "': " + ec.message());

    const bool tty = isatty(STDERR_FILENO) != 0 && mpi.rank() == 0;
    const auto start = std::chrono::steady_clock::now();
    auto progress = [&](std::int64_t done, std::int64_t total) {
      if (!tty) return;
      const int width = 30, filled = static_cast<int>(width * done / total);
      std::fprintf(stderr, "\r[%s%s] %lld/%lld steps", std::string(filled, '#').c_str(),
                   std::string(width - filled, '.').c_str(), static_cast<long long>(done), static_cast<long long>(total));
      if (done == total) std::fprintf(stderr, "\n");
    };
    const BuildFeatures f = build_features();
    auto write = [&](const pipeline::GeneratedImage& img, const std::filesystem::path& dir, double scale) {
      std::filesystem::create_directories(dir);
      const std::string name = std::to_string(img.prompt_index) + "-" + std::to_string(img.image_index) + "-seed" +
                               std::to_string(img.seed) + ".png";
      const std::string path = (dir / name).string();
      io::write_png(path, img.rgb.data_ptr<std::uint8_t>(), static_cast<int>(img.rgb.size(1)),
                    static_cast<int>(img.rgb.size(0)),
                    {{"prompt", req.prompts[img.prompt_index]},
                     {"negative_prompt", req.negative_prompt},
                     {"seed", std::to_string(img.seed)},
                     {"steps", std::to_string(req.steps)},
                     {"guidance_scale", util::format_number(req.guidance_scale)},
                     {"scheduler", req.scheduler},
                     {"size", std::to_string(req.width) + "x" + std::to_string(req.height)},
                     {"model", *model},
                     {"lora", lora_path && scale != 0.0 ? *lora_path + " (scale " + util::format_number(scale) + ")"
                                                        : "none"},
                     {"software", "sdxl-dreambooth " + f.program_version + " (" + f.git_commit + ")"}});
      std::cout << path << "\n";
    };
    const double budget = budget_gib * 1024.0 * 1024.0 * 1024.0;
    const auto sizing = pipeline::size_batches(pipe, req, budget);
    if (batch_arg == "auto") req.batch_size = sizing.batch_size;
    const auto batches = pipeline::plan_batches(req);
    if (comm->rank() == 0) {
      std::cerr << "batches of " << req.batch_size << " image(s): " << batches.size() << " UNet batch(es) on "
                << comm->world_size() << " rank(s); estimated activations "
                << util::format_bytes(sizing.unet_bytes(req.batch_size))
                << " per batch, " << util::format_bytes(sizing.vae_bytes) << " per decode (budget "
                << util::format_bytes(budget) << "); " << threads.threads << " CPU thread(s) per rank ("
                << threads.why << ")\n";
      if (batch_arg != "auto" && sizing.unet_bytes(req.batch_size) > budget) {
        std::cerr << "warning: --batch-size " << req.batch_size << " is estimated over --memory-budget ("
                  << util::format_bytes(budget) << "); auto would take " << sizing.batch_size << "\n";
      } else if (!sizing.fits) {
        std::cerr << "warning: one image needs more than --memory-budget (" << util::format_bytes(budget)
                  << "); generating one image at a time\n";
      }
      if (static_cast<int>(batches.size()) < comm->world_size()) {
        std::cerr << "warning: " << comm->world_size() - static_cast<int>(batches.size())
                  << " rank(s) have no batch; a smaller --batch-size spreads the images\n";
      }
    }
    // Whole batches per rank (batch j on rank j mod world) and rank 0 writes them all: an image
    // is drawn in the same batch on any rank count, so the files equal a one-process run's.
    const auto mine = pipeline::rank_share(batches, comm->rank(), comm->world_size());
    auto draw = [&] {
      std::vector<pipeline::GeneratedImage> images;
      if (!mine.empty()) images = pipe.generate(req, mine, progress);
      return pipeline::gather_images(std::move(images), *comm, req);
    };
    std::size_t count = 0;
    if (!compare_base) {
      const auto images = draw();
      if (comm->rank() == 0) {
        for (const auto& img : images) write(img, *out, lora_scale);
      }
      count = images.size();
    } else {
      // Same seeds twice: adapters off (base), then on (fine-tuned).
      set_lora_scale(pipe, 0.0);
      const auto base = draw();
      set_lora_scale(pipe, lora_scale);
      const auto tuned = draw();
      count = base.size() + tuned.size();
      if (comm->rank() != 0) return 0;
      for (const auto& img : base) write(img, std::filesystem::path(*out) / "base", 0.0);
      for (const auto& img : tuned) write(img, std::filesystem::path(*out) / "lora", lora_scale);
      const std::string grid = (std::filesystem::path(*out) / "compare.png").string();
      write_comparison_grid(grid, base, tuned, req, *lora_path, lora_scale);
      std::cout << grid << "\n";
    }
    if (comm->rank() != 0) return 0;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cerr << count << " image(s) in " << util::format_number(std::round(s * 100) / 100) << " s\n";
    return 0;
  };
  return c;
}

}  // namespace sdxl::cli
