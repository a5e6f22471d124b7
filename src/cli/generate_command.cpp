// `generate`: SDXL text-to-image from the command line, PNGs with their settings in text chunks.
#include "sdxl_dreambooth/build_features.h"
#include "sdxl_dreambooth/cli/command.h"
#include "sdxl_dreambooth/cli/generate_options.h"
#include "sdxl_dreambooth/cli/rank_job.h"
#include "sdxl_dreambooth/dist/host_collectives.h"
#include "sdxl_dreambooth/dist/mpi_runtime.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/io/folder_lock.h"
#include "sdxl_dreambooth/model/lora_import.h"
#include "sdxl_dreambooth/model/token_embeddings_file.h"
#include "sdxl_dreambooth/model/component_loader.h"
#include "sdxl_dreambooth/model/model_location.h"
#include "sdxl_dreambooth/nn/lora_linear.h"
#include "sdxl_dreambooth/pipeline/comparison_grid.h"
#include "sdxl_dreambooth/pipeline/generation_batches.h"
#include "sdxl_dreambooth/pipeline/image_png.h"
#include "sdxl_dreambooth/pipeline/sdxl_pipeline.h"
#include "sdxl_dreambooth/train/fault_injection.h"
#include "sdxl_dreambooth/util/blas_library.h"
#include "sdxl_dreambooth/util/cpu_threads.h"
#include "sdxl_dreambooth/util/host_memory.h"
#include "sdxl_dreambooth/util/stopwatch.h"
#include "sdxl_dreambooth/util/strings.h"
#include "sdxl_dreambooth/torch_compat.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <optional>

namespace sdxl::cli {

namespace {

namespace fs = std::filesystem;

// A generation's ranks meet only to gather images, after drawing theirs: an hour covers the
// slowest rank's share on the CPU.
constexpr double kGenerateTimeoutS = 3600;

const char* const kHelp =
      "usage: sdxl-dreambooth generate --model DIR_OR_HUB_ID --prompt P [--prompt P]... --out DIR\n"
      "         [--negative N] [--steps 25] [--guidance 5] [--seed 0] [--size 1024x1024]\n"
      "         [--num-images 1] [--scheduler dpmpp2m|euler|euler_karras] [--vae DIR_OR_HUB_ID]\n"
      "         [--batch-size auto|N] [--memory-budget 8]\n"
      "         [--variant fp16] [--revision main] [--dtype fp32|bf16|fp16] [--device cpu|cuda]\n"
      "         [--lora FILE [--lora-scale 1] [--lora-mode merge|runtime] [--compare-base]]\n"
      "         [--embeddings FILE]\n\n"
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
      ".alpha), e.g. from `export --format kohya`; LoCon's 4-D convolution adapters too. merge\n"
      "folds scale * B A into the\n"
      "weights (no cost per step); runtime keeps the adapters beside them. The number of\n"
      "applied and unused adapters is reported; a file whose adapters match nothing is an error.\n"
      "--compare-base draws every image twice with the same seed, without and with the LoRA, into\n"
      "OUT/base/ and OUT/lora/, plus OUT/compare.png: one row per image, base | fine-tuned, with\n"
      "the column and row labels drawn above the images (FreeType, a font found by fontconfig)\n"
      "and in its PNG text chunks.\n\n"
      "--embeddings loads pivotal tuning's <name>_emb.safetensors (clip_l and clip_g rows, as\n"
      "diffusers' advanced script writes them): both tokenizers gain its tokens <s0>, <s1>, ...\n"
      "and, when the file names them (this program's files do), each abstraction such as TOK in\n"
      "a prompt is replaced by its tokens, as in training. Use it with the LoRA trained beside it.\n"
      "The base images of --compare-base read the prompts without the new tokens.\n\n"
      "Under mpirun whole batches are dealt to the ranks in turn (batch j to rank j mod ranks)\n"
      "and rank 0 writes the images; the files are the same as a one-process run's. Use a\n"
      "batch size at most images / ranks to keep every rank busy.\n";

// --variant falls back per component, as diffusers' pipeline does: said for each one.
void warn_variant_fallbacks(const GenerateOptions& o) {
  if (!o.model.variant) return;
  const model::PipelineFolder folder = model::open_pipeline(o.model.pretrained, o.model.revision);
  const fs::path vae = o.model.vae ? model::resolve_component_dir(*o.model.vae, o.model.revision, "vae")
                                   : folder.component("vae");
  for (const auto& w : model::variant_fallback_warnings(
           {folder.component("unet"), vae, folder.component("text_encoder"), folder.component("text_encoder_2")},
           o.model.variant)) {
    std::cerr << "warning: " << w << "\n";
  }
}

// This rank's device: its node's own GPU (local rank modulo the GPUs it sees), current before
// anything touches CUDA; and its share of the node's CPU cores.
torch::Device place_rank(const GenerateOptions& o, const dist::MpiRuntime& mpi, util::CpuThreads& threads) {
  const bool cuda = o.device == "cuda";
  const int gpu = cuda ? mpi.local_rank() % std::max(1, static_cast<int>(torch::cuda::device_count())) : 0;
  if (cuda) compat::set_cuda_device(gpu);
  const torch::Device device = cuda ? torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(gpu))
                                    : torch::Device(torch::kCPU);
  threads = util::configure_cpu_threads(dist::node_affinity_masks(mpi.node(), kGenerateTimeoutS),
                                        static_cast<std::size_t>(mpi.local_rank()));
  if (auto w = util::slow_blas_warning(util::blas_library(), device); w && mpi.rank() == 0) {
    std::cerr << "warning: " << *w << "\n";
  }
  util::keep_freed_host_memory(device.is_cpu());  // each denoising step re-allocates the same blocks
  return device;
}

// The UNet's and, when the file has them, both text encoders' adapters; the counts of applied
// and unused ones reported. A file none of whose adapters matches is an Error.
void apply_lora_file(pipeline::SdxlPipeline& pipe, const model::LoraFileContents& lora, const GenerateOptions& o) {
  std::size_t applied = 0, in_file = 0;
  std::vector<std::string> unused;
  const std::pair<torch::nn::Module*, const std::map<std::string, model::LoraPair>*> parts[] = {
      {pipe.unet.get(), &lora.unet}, {pipe.text_encoder.get(), &lora.text_encoder},
      {pipe.text_encoder_2.get(), &lora.text_encoder_2}};
  for (const auto& [module, adapters] : parts) {
    if (adapters->empty()) continue;
    const auto report = model::apply_lora(*module, *adapters, *o.lora, o.lora_scale, o.merge_lora);
    applied += report.applied;
    in_file += adapters->size();
    unused.insert(unused.end(), report.unused.begin(), report.unused.end());
  }
  if (applied == 0) {
    throw Error(*o.lora + ": none of its " + std::to_string(in_file) + " adapters matches a layer of " +
                    o.model.pretrained + " (first: " + util::quoted(unused.front()) + ")",
                "is it a LoRA for SDXL? Names this program reads: diffusers/peft module paths "
                "(unet.down_blocks.1...to_q) or kohya's (lora_unet_input_blocks_4_1_..., LoCon's ..._in_layers_2)");
  }
  std::cerr << "LoRA " << *o.lora << " (" << lora.format << "): " << applied << " adapters "
            << (o.merge_lora ? "merged" : "applied at run time") << " with scale " << util::format_number(o.lora_scale)
            << ", " << unused.size() << " unused";
  if (!lora.text_encoder.empty() || !lora.text_encoder_2.empty()) {
    std::cerr << " (" << lora.text_encoder.size() + lora.text_encoder_2.size() << " in the text encoders)";
  }
  std::cerr << "\n";
  for (const auto& u : unused) std::cerr << "warning: LoRA module not in the model: " << u << "\n";
}

// Sizes the batches (--batch-size auto: the largest whose estimated activations fit the
// budget) and, on rank 0, says how the images are split and warns where that is poor.
std::vector<std::vector<pipeline::ImageRef>> plan_generation(pipeline::SdxlPipeline& pipe, GenerateOptions& o,
                                             const dist::HostCollectives& comm, const util::CpuThreads& threads) {
  pipeline::GenerationRequest& req = o.request;
  const double budget = o.memory_budget_gib * 1024.0 * 1024.0 * 1024.0;
  const auto sizing = pipeline::size_batches(pipe, req, budget);
  if (o.auto_batch) req.batch_size = sizing.batch_size;
  const auto batches = pipeline::plan_batches(req);
  if (comm.rank() != 0) return batches;
  std::cerr << "batches of " << req.batch_size << " image(s): " << batches.size() << " UNet batch(es) on "
            << comm.world_size() << " rank(s); estimated activations "
            << util::format_bytes(sizing.unet_bytes(req.batch_size)) << " per batch, "
            << util::format_bytes(sizing.vae_bytes) << " per decode (budget " << util::format_bytes(budget) << "); "
            << threads.threads << " CPU thread(s) per rank (" << threads.why << ")\n";
  if (!o.auto_batch && sizing.unet_bytes(req.batch_size) > budget) {
    std::cerr << "warning: --batch-size " << req.batch_size << " is estimated over --memory-budget ("
              << util::format_bytes(budget) << "); auto would take " << sizing.batch_size << "\n";
  } else if (!sizing.fits) {
    std::cerr << "warning: one image needs more than --memory-budget (" << util::format_bytes(budget)
              << "); generating one image at a time\n";
  }
  if (static_cast<int>(batches.size()) < comm.world_size()) {
    std::cerr << "warning: " << comm.world_size() - static_cast<int>(batches.size())
              << " rank(s) have no batch; a smaller --batch-size spreads the images\n";
  }
  return batches;
}

// DIR/<prompt>-<image>-seed<S>.png with every setting in its text chunks; the path on stdout.
void write_generated(const pipeline::GeneratedImage& img, const fs::path& dir, double scale, const GenerateOptions& o) {
  const pipeline::GenerationRequest& req = o.request;
  const BuildFeatures f = build_features();
  fs::create_directories(dir);
  const std::string name = std::to_string(img.prompt_index) + "-" + std::to_string(img.image_index) + "-seed" +
                           std::to_string(img.seed) + ".png";
  const std::string path = (dir / name).string();
  // Same name, same seed and prompt index: a rerun replaces its own earlier image, and says so.
  std::error_code ec;
  if (fs::exists(fs::symlink_status(path, ec))) std::cerr << "warning: replacing " << util::quoted(path) << "\n";
  pipeline::write_image_png(
      path, img,
      {{"prompt", req.prompts[img.prompt_index]},
       {"negative_prompt", req.negative_prompt},
       {"seed", std::to_string(img.seed)},
       {"steps", std::to_string(req.steps)},
       {"guidance_scale", util::format_number(req.guidance_scale)},
       {"scheduler", req.scheduler},
       {"size", std::to_string(req.width) + "x" + std::to_string(req.height)},
       {"model", o.model.pretrained},
       {"lora", o.lora && scale != 0.0 ? *o.lora + " (scale " + util::format_number(scale) + ")" : "none"},
       {"embeddings", o.embeddings && scale != 0.0 ? *o.embeddings : "none"},
       {"software", "sdxl-dreambooth " + f.program_version + " (" + f.git_commit + ")"}});
  std::cout << path << "\n";
}

// Pivotal tuning's tokens in both tokenizers and text encoders; said on rank 0.
void add_embeddings(pipeline::SdxlPipeline& pipe, const model::TokenEmbeddings& e, const std::string& path,
                    bool report) {
  try {
    pipe.add_tokens(e.abstractions, e.clip_l.to(pipe.options.device), e.clip_g.to(pipe.options.device));
  } catch (const Error& err) {
    throw Error(path + ": " + err.what(), err.hint());
  }
  if (!report) return;
  const auto tokens = e.abstractions.tokens();
  const bool named = !e.abstractions.entries().front().first.empty();
  std::string what = named ? e.abstractions.describe() : util::join(tokens, "");
  if (what.size() > 200) what = what.substr(0, 200) + "...";
  std::cerr << "embeddings " << path << ": " << tokens.size() << " token(s) " << what << "\n";
}

// A progress bar on a terminal (rank 0); nothing in logs.
std::function<void(std::int64_t, std::int64_t)> progress_bar(bool tty) {
  return [tty](std::int64_t done, std::int64_t total) {
    if (!tty) return;
    const int width = 30, filled = static_cast<int>(width * done / total);
    std::fprintf(stderr, "\r[%s%s] %lld/%lld steps", std::string(filled, '#').c_str(),
                 std::string(width - filled, '.').c_str(), static_cast<long long>(done), static_cast<long long>(total));
    if (done == total) std::fprintf(stderr, "\n");
  };
}

// What the command line names must exist: a model, VAE or LoRA that does not is a usage
// error (exit 2), as in train, found before MPI and the model load.
void check_inputs_exist(const GenerateOptions& o) {
  try {
    model::open_pipeline(o.model.pretrained, o.model.revision);
    if (o.model.vae) model::resolve_component_dir(*o.model.vae, o.model.revision, "vae");
  } catch (const UsageError&) {
    throw;
  } catch (const Error& e) {
    throw UsageError(std::string(o.model.vae ? "--model/--vae: " : "--model: ") + e.what(), e.hint());
  }
  std::error_code ec;
  if (o.embeddings && !fs::is_regular_file(*o.embeddings, ec)) {
    throw UsageError("--embeddings " + util::quoted(*o.embeddings) +
                         (fs::exists(*o.embeddings, ec) ? ": not a file" : ": no such file"),
                     "give pivotal tuning's embeddings, e.g. OUTPUT/<output.name>_emb.safetensors");
  }
  if (o.lora && !fs::is_regular_file(*o.lora, ec)) {
    throw UsageError("--lora " + util::quoted(*o.lora) +
                     (fs::exists(*o.lora, ec) ? ": not a file" : ": no such file"),
                     "give a LoRA .safetensors file, e.g. OUTPUT/pytorch_lora_weights.safetensors");
  }
}

// --out inside the model folder would mix images into the model; refused.
void refuse_output_in_model(const GenerateOptions& o) {
  std::error_code ec;
  fs::path model_dir;
  try {
    model_dir = fs::weakly_canonical(model::resolve_model_dir(o.model.pretrained, o.model.revision), ec);
  } catch (const Error&) {
    return;  // a model that does not resolve fails at loading, with its own message
  }
  const fs::path out = fs::weakly_canonical(o.out, ec);
  const fs::path rel = out.lexically_relative(model_dir);
  if (!rel.empty() && *rel.begin() != "..") {
    throw UsageError("--out " + util::quoted(o.out) + " is inside the model folder " +
                     util::quoted(model_dir.string()), "write the images to a folder of their own");
  }
}

int generate_on_every_rank(GenerateOptions& o, const dist::MpiRuntime& mpi,
                           const std::optional<model::LoraFileContents>& lora,
                           const std::optional<model::TokenEmbeddings>& embeddings);

int run_generate(const std::vector<std::string>& argv) {
  GenerateOptions o = generate_options(parse_generate_args(argv));
  check_inputs_exist(o);
  refuse_output_in_model(o);
  std::optional<model::LoraFileContents> lora;
  if (o.lora) lora = model::read_lora_file(*o.lora);  // a bad file fails before the model load
  std::optional<model::TokenEmbeddings> embeddings;
  if (o.embeddings) embeddings = model::read_token_embeddings(*o.embeddings);

  dist::MpiRuntime mpi(nullptr, nullptr);
  try {
    return generate_on_every_rank(o, mpi, lora, embeddings);
  } catch (const std::exception& e) {
    end_job_after(mpi, e);  // a failed rank ends the job: the others would wait for its images
  }
}

int generate_on_every_rank(GenerateOptions& o, const dist::MpiRuntime& mpi,
                           const std::optional<model::LoraFileContents>& lora,
                           const std::optional<model::TokenEmbeddings>& embeddings) {
  util::CpuThreads threads;
  const torch::Device device = place_rank(o, mpi, threads);
  // Generation gathers images (host data) only.
  const auto comm = dist::make_mpi_host_collectives(mpi.world(), kGenerateTimeoutS);
  if (mpi.rank() == 0) warn_variant_fallbacks(o);
  auto pipe = pipeline::SdxlPipeline::load({o.model.pretrained, o.model.vae, o.model.variant, o.model.revision,
                                            o.dtype, std::nullopt, device});
  if (lora) apply_lora_file(pipe, *lora, o);
  if (embeddings) add_embeddings(pipe, *embeddings, *o.embeddings, mpi.rank() == 0);
  // Created and locked (rank 0 writes the images) only once the model loaded: a bad --model
  // writes nothing, and a second generate into the same folder fails at once.
  std::optional<io::FolderLock> lock;
  if (mpi.rank() == 0) lock.emplace(o.out, "--out");
  if (mpi.rank() == 0) {
    std::vector<std::string> prompts = o.request.prompts;
    prompts.push_back(o.request.negative_prompt);
    for (const auto& p : prompts) {
      if (const auto warning = pipeline::truncation_warning(*pipe.tokenizer, p)) std::cerr << "warning: " << *warning << "\n";
    }
  }

  const util::Stopwatch watch;
  // Whole batches per rank (batch j on rank j mod world) and rank 0 writes them all: an image
  // is drawn in the same batch on any rank count, so the files equal a one-process run's.
  const auto mine = pipeline::rank_share(plan_generation(pipe, o, *comm, threads), comm->rank(), comm->world_size());
  const auto bar = progress_bar(isatty(STDERR_FILENO) != 0 && mpi.rank() == 0);
  const auto progress = [&bar, rank = mpi.rank()](std::int64_t done, std::int64_t total) {
    train::maybe_inject_fault(rank, train::kFaultStepGenerate);
    bar(done, total);
  };
  auto draw = [&] {
    std::vector<pipeline::GeneratedImage> images;
    if (!mine.empty()) images = pipe.generate(o.request, mine, progress);
    pipeline::require_finite_images(images, o.request,
                                    o.lora ? "the LoRA's weights, --lora-scale or --guidance overflow float"
                                           : "the model's weights or --guidance overflow float");
    return pipeline::gather_images(std::move(images), *comm, o.request);
  };
  // Everything is drawn before anything is written: a failure on the way leaves no trace of
  // the run, the folder it created included (as a refused train run).
  std::vector<pipeline::GeneratedImage> base, images;
  try {
    if (o.compare_base) {
      // Same seeds twice: adapters off (base), then on (fine-tuned).
      pipe.set_lora_scale(0.0);
      pipe.set_added_tokens_enabled(false);
      base = draw();
      pipe.set_lora_scale(o.lora_scale);
      pipe.set_added_tokens_enabled(true);
    }
    images = draw();
  } catch (...) {
    if (lock) lock->abandon();
    throw;
  }
  const std::size_t count = base.size() + images.size();
  if (comm->rank() != 0) return 0;
  if (!o.compare_base) {
    for (const auto& img : images) write_generated(img, o.out, o.lora_scale, o);
  } else {
    for (const auto& img : base) write_generated(img, fs::path(o.out) / "base", 0.0, o);
    for (const auto& img : images) write_generated(img, fs::path(o.out) / "lora", o.lora_scale, o);
    const std::string grid = (fs::path(o.out) / "compare.png").string();
    pipeline::write_comparison_grid(grid, base, images, o.request, *o.lora, o.lora_scale);
    std::cout << grid << "\n";
  }
  std::cerr << count << " image(s) in " << util::format_number(std::round(watch.seconds() * 100) / 100) << " s\n";
  return 0;
}

}  // namespace

Command make_generate_command() {
  Command c;
  c.name = "generate";
  c.summary = "SDXL text-to-image: PNGs with prompt, seed and settings in their text chunks";
  c.help = kHelp;
  c.run = run_generate;
  return c;
}

}  // namespace sdxl::cli
