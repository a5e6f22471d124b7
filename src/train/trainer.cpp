#include "sdxl_dreambooth/train/trainer.h"

#include "sdxl_dreambooth/build_features.h"
#include "sdxl_dreambooth/data/image_folder.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/io/png_writer.h"
#include "sdxl_dreambooth/model/lora_export.h"
#include "sdxl_dreambooth/model/unet_flops.h"
#include "sdxl_dreambooth/model/model_fingerprint.h"
#include "sdxl_dreambooth/nn/lora_network.h"
#include "sdxl_dreambooth/nn/prompt_encoding.h"
#include "sdxl_dreambooth/pipeline/generation_batches.h"
#include "sdxl_dreambooth/pipeline/sdxl_pipeline.h"
#include "sdxl_dreambooth/sampling/noise_schedule.h"
#include "sdxl_dreambooth/train/adamw.h"
#include "sdxl_dreambooth/train/checkpoint_dir.h"
#include "sdxl_dreambooth/train/checkpoint_file.h"
#include "sdxl_dreambooth/train/data_order.h"
#include "sdxl_dreambooth/train/diffusion_loss.h"
#include "sdxl_dreambooth/train/gradient_sync.h"
#include "sdxl_dreambooth/train/loss_scaler.h"
#include "sdxl_dreambooth/train/lr_schedule.h"
#include "sdxl_dreambooth/train/preemption.h"
#include "sdxl_dreambooth/train/training_checkpoint.h"
#include "sdxl_dreambooth/train/train_step.h"
#include "sdxl_dreambooth/train/training_data.h"
#include "sdxl_dreambooth/train/training_setup.h"
#include "sdxl_dreambooth/util/memory_usage.h"
#include "sdxl_dreambooth/util/strings.h"
#include "sdxl_dreambooth/util/to_device.h"

#include <unistd.h>

#include <chrono>
#include <ctime>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <thread>
#include <csignal>
#include <cstdlib>
#include <cstring>

namespace fs = std::filesystem;

namespace sdxl::train {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string format_duration(double s) {
  const auto total = static_cast<long long>(std::llround(std::max(0.0, s)));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", total / 3600, total / 60 % 60, total % 60);
  return buf;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// Random streams of a run, all derived from train.seed.
enum Stream : std::uint64_t { kAugment = 2, kLoraInit = 3, kNoise = 4, kClassImages = 5 };

struct RunSettings {
  torch::Device device = torch::kCPU;
  torch::Dtype dtype = torch::kFloat;
  std::string mixed_precision;
  std::uint64_t seed = 0;
  bool prior = false;
  int resolution = 1024;
  fs::path output;
  fs::path checkpoint_dir;
  std::int64_t checkpoint_every = 500;
  std::int64_t keep_last = 0;  // 0: keep all
  bool cuda_graphs = false;
};

RunSettings resolve_settings(const config::Config& cfg, int local_rank) {
  RunSettings s;
  s.device = training_device(cfg, local_rank);
  configure_cudnn(cfg);
  s.mixed_precision = cfg.get_string("train.mixed_precision");
  s.dtype = training_dtype(cfg, s.device);
  s.cuda_graphs = cuda_graphs(cfg, s.device);
  if (auto seed = cfg.get_optional_int("train.seed")) {
    s.seed = static_cast<std::uint64_t>(*seed);
  } else {
    s.seed = std::random_device{}() & 0xffffffffu;
  }
  s.prior = cfg.get_bool("prior.enabled");
  s.resolution = static_cast<int>(cfg.get_int("data.resolution"));
  s.output = cfg.get_string("output.dir");
  s.checkpoint_dir = cfg.get_optional_string("checkpoint.dir").value_or((s.output / "checkpoints").string());
  s.checkpoint_every = cfg.get_int("checkpoint.every_steps");
  s.keep_last = cfg.get_optional_int("checkpoint.keep_last").value_or(0);
  return s;
}

void write_image(const fs::path& path, const pipeline::GeneratedImage& img, const io::PngText& text) {
  io::write_png(path.string(), img.rgb.data_ptr<std::uint8_t>(), static_cast<int>(img.rgb.size(1)),
                static_cast<int>(img.rgb.size(0)), text);
}

// diffusers' DreamBooth script generates the missing class images with the base model
// before training; they are written into class_dir so the next run reuses them.
void ensure_class_images(pipeline::SdxlPipeline& pipe, const config::Config& cfg, const RunSettings& s,
                         const Logger& log, dist::HostCollectives& comm) {
  const std::string dir = *cfg.get_optional_string("data.class_dir");
  const std::string prompt = *cfg.get_optional_string("data.class_prompt");
  const std::int64_t wanted = cfg.get_int("data.num_class_images");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error("data.class_dir: cannot create " + util::quoted(dir) + ": " + ec.message());
  // Every rank decides from rank 0's count, so all take the same branch.
  std::int64_t existing = 0;
  if (comm.rank() == 0) existing = static_cast<std::int64_t>(data::list_image_files(dir, "data.class_dir").size());
  existing = static_cast<std::int64_t>(comm.all_reduce_max(static_cast<double>(existing), "class image count"));
  if (existing >= wanted) return;
  const std::int64_t missing = wanted - existing;
  log.info("prior preservation: generating " + std::to_string(missing) + " class images for " + util::quoted(prompt) +
           " into " + dir);
  pipeline::GenerationRequest r;
  r.prompts = {prompt};
  r.steps = cfg.get_int("prior.sample_steps");
  r.guidance_scale = 5.0;
  r.seed = derive_seed(s.seed, kClassImages) & 0xffffffffu;
  r.width = r.height = s.resolution;
  r.images_per_prompt = missing;
  r.scheduler = cfg.get_string("validation.scheduler");
  r.batch_size = cfg.get_int("prior.sample_batch_size");
  // Whole batches per rank (batch j on rank j mod world), each written as soon as it is drawn
  // (an interrupted run keeps them); image k is named after existing + k, so no two ranks
  // write the same file and the images do not depend on the rank count.
  const auto batches = pipeline::plan_batches(r);
  for (std::size_t j = static_cast<std::size_t>(comm.rank()); j < batches.size();
       j += static_cast<std::size_t>(comm.world_size())) {
    for (const auto& img : pipe.generate(r, batches[j])) {
      const std::int64_t k = img.image_index;
      char name[32];
      std::snprintf(name, sizeof name, "class-%05lld.png", static_cast<long long>(existing + k));
      const fs::path path = fs::path(dir) / name;
      write_image(path, img,
                  {{"prompt", prompt}, {"seed", std::to_string(img.seed)}, {"steps", std::to_string(r.steps)},
                   {"model", cfg.get_string("model.pretrained")}, {"software", "sdxl-dreambooth class image"}});
      log.info_all_ranks("class image " + std::to_string(k + 1) + "/" + std::to_string(missing) + ": " +
                         path.string());
    }
  }
  comm.barrier("end of class-image generation");
}

// Returns the images on rank 0 (for the next checkpoint), nothing elsewhere.
std::vector<SampleImage> run_validation(pipeline::SdxlPipeline& pipe, const config::Config& cfg, const RunSettings& s,
                                        std::int64_t step, const Logger& log, dist::HostCollectives& comm) {
  pipeline::GenerationRequest r;
  r.prompts = cfg.get_list("validation.prompts");
  r.negative_prompt = cfg.get_string("validation.negative_prompt");
  r.steps = cfg.get_int("validation.steps");
  r.guidance_scale = cfg.get_float("validation.guidance_scale");
  r.seed = static_cast<std::uint64_t>(cfg.get_optional_int("validation.seed").value_or(static_cast<std::int64_t>(s.seed)));
  const std::int64_t size = cfg.get_optional_int("validation.resolution").value_or(s.resolution);
  r.width = r.height = size;
  r.images_per_prompt = cfg.get_int("validation.num_images");
  r.scheduler = cfg.get_string("validation.scheduler");
  const auto start = Clock::now();
  r.batch_size = cfg.get_int("validation.batch_size");
  // Whole batches per rank (batch j on rank j mod world), then gathered on rank 0.
  const auto mine = pipeline::rank_share(pipeline::plan_batches(r), comm.rank(), comm.world_size());
  std::vector<pipeline::GeneratedImage> images;
  if (!mine.empty()) images = pipe.generate(r, mine);
  images = pipeline::gather_images(std::move(images), comm, r);
  if (comm.rank() != 0) return {};
  const fs::path dir = s.output / "samples" / ("step_" + std::to_string(step));
  fs::create_directories(dir);
  for (const auto& img : images) {
    const fs::path path = dir / (std::to_string(img.prompt_index) + "-" + std::to_string(img.image_index) + ".png");
    write_image(path, img,
                {{"prompt", r.prompts[img.prompt_index]}, {"negative_prompt", r.negative_prompt},
                 {"seed", std::to_string(img.seed)}, {"steps", std::to_string(r.steps)},
                 {"guidance_scale", util::format_number(r.guidance_scale)}, {"scheduler", r.scheduler},
                 {"model", cfg.get_string("model.pretrained")}, {"lora_step", std::to_string(step)},
                 {"software", "sdxl-dreambooth"}});
  }
  log.info("validation at step " + std::to_string(step) + ": " + std::to_string(images.size()) + " images in " +
           dir.string() + " (" + fmt("%.1f", seconds_since(start)) + " s)");
  std::vector<SampleImage> samples;
  for (const auto& img : images) {
    samples.push_back({step, static_cast<std::int64_t>(img.prompt_index), img.image_index, r.prompts[img.prompt_index],
                       img.seed, img.rgb});
  }
  return samples;
}

// Rows `idx` of the cached examples (instance, then class rows with prior preservation),
// with a fresh posterior sample, noise and timesteps drawn from `gen` in diffusers' order.
DiffusionBatch assemble_batch(const EncodedImages& inst, const EncodedImages* cls, const PromptTable& prompts,
                              const std::vector<std::int64_t>& idx, at::Generator& gen, double noise_offset,
                              std::int64_t num_train_timesteps, double scaling_factor, const torch::Device& device,
                              pipeline::SdxlPipeline* train_text_encoders) {
  std::vector<std::int64_t> rows_i, rows_c, prompt_rows;
  for (auto i : idx) {
    rows_i.push_back(i % inst.size());
    prompt_rows.push_back(static_cast<std::int64_t>(inst.prompt_index[static_cast<std::size_t>(rows_i.back())]));
  }
  if (cls) {
    for (auto i : idx) {
      rows_c.push_back(i % cls->size());
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
  const torch::Tensor mean = take(inst.mean, cls ? &cls->mean : nullptr);
  const torch::Tensor std = take(inst.std, cls ? &cls->std : nullptr);
  DiffusionBatch b;
  b.time_ids = take(inst.time_ids, cls ? &cls->time_ids : nullptr);
  const auto pr = util::to_device_async(torch::tensor(prompt_rows, torch::kLong), prompts.prompt_embeds.device());
  if (train_text_encoders) {
    // Text-encoder LoRA: the embeddings depend on trained weights, so they are computed per step.
    const auto e = nn::encode_prompt(train_text_encoders->text_encoder, train_text_encoders->text_encoder_2,
                                     prompts.ids_1.index_select(0, pr), prompts.ids_2.index_select(0, pr));
    b.prompt_embeds = e.prompt_embeds;
    b.text_embeds = e.pooled_prompt_embeds;
  } else {
    b.prompt_embeds = prompts.prompt_embeds.index_select(0, pr);
    b.text_embeds = prompts.pooled.index_select(0, pr);
  }
  // Drawn on the CPU: the same numbers on every device.
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat);
  const std::int64_t B = mean.size(0), C = mean.size(1);
  const torch::Tensor sample = util::to_device_async(at::randn(mean.sizes(), gen, f32), device);
  b.latents = (mean + std * sample) * scaling_factor;
  torch::Tensor noise = at::randn(mean.sizes(), gen, f32);
  if (noise_offset > 0) noise = noise + noise_offset * at::randn({B, C, 1, 1}, gen, f32);
  b.noise = util::to_device_async(noise, device);
  b.timesteps = util::to_device_async(
      at::randint(0, num_train_timesteps, {B}, gen, torch::TensorOptions().dtype(torch::kLong)), device);
  return b;
}

// Fault injection for the failure tests only (tests/e2e/distributed_train_test.cpp):
// SDXL_TEST_FAULT="exit:R:S" makes rank R exit at step S, "stall:R:S" makes it hang there,
// "signal:R:S" sends it SIGUSR1 there (a preemption at a known step, through the real handler).
void maybe_inject_fault(int rank, std::int64_t step) {
  const char* spec = std::getenv("SDXL_TEST_FAULT");
  if (!spec) return;
  char kind[16] = {0};
  int fault_rank = -1;
  long long fault_step = -1;
  if (std::sscanf(spec, "%15[a-z]:%d:%lld", kind, &fault_rank, &fault_step) != 3) return;
  if (fault_rank != rank || fault_step != step) return;
  std::fprintf(stderr, "[rank %d] SDXL_TEST_FAULT: %s at step %lld\n", rank, kind, fault_step);
  std::fflush(stderr);
  if (std::string(kind) == "exit") std::_Exit(3);
  if (std::string(kind) == "signal") std::raise(SIGUSR1);
  if (std::string(kind) == "stall") {
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
}

// What a checkpoint must match to be continued by this config.
std::vector<AdapterSettings> adapter_settings(const config::Config& cfg) {
  const nn::LoraSpec spec = lora_spec(cfg);
  std::vector<AdapterSettings> out{{"unet", spec.rank, spec.alpha, spec.targets}};
  if (cfg.get_bool("lora.train_text_encoder")) {
    for (const char* m : {"text_encoder", "text_encoder_2"}) {
      out.push_back({m, spec.rank, spec.alpha, cfg.get_list("lora.text_encoder_targets")});
    }
  }
  return out;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string host_name() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

void write_metrics_row(std::ofstream& out, const MetricsRow& r) {
  out << r.step << ',' << fmt("%.8g", r.loss) << ',' << fmt("%.8g", r.lr) << ',' << fmt("%.8g", r.grad_norm) << ','
      << fmt("%.6f", r.step_seconds) << '\n';
}

// The UNet's blocks per level when uniform (SDXL: 2), else 0 (no SGM names for kohya export).
int uniform_layers_per_block(const model::UNetConfig& c) {
  if (c.layers_per_block.empty()) return 0;
  for (auto n : c.layers_per_block) {
    if (n != c.layers_per_block[0]) return 0;
  }
  return static_cast<int>(c.layers_per_block[0]);
}

bool validation_due(const config::Config& cfg, std::int64_t step, std::int64_t steps_per_epoch) {
  if (cfg.get_list("validation.prompts").empty()) return false;
  if (auto every = cfg.get_optional_int("validation.every_steps")) return step % *every == 0;
  const std::int64_t epochs = cfg.get_optional_int("validation.every_epochs").value_or(50);
  return step % (epochs * steps_per_epoch) == 0;
}

}  // namespace

TrainSummary run_training(const config::Config& cfg, const Logger& log, dist::Collectives& comm, int local_rank) {
  const auto run_start = Clock::now();
  RunSettings s = resolve_settings(cfg, local_rank);
  const int rank = comm.rank(), world = comm.world_size();
  const bool writer = rank == 0;
  // An unset seed is drawn once, on rank 0 (seeds are < 2^32: exact in a double).
  s.seed = static_cast<std::uint64_t>(comm.host().all_reduce_max(rank == 0 ? double(s.seed) : -1.0, "seed"));
  // SIGUSR1/SIGTERM from here on only request a checkpoint at the next step boundary.
  const PreemptionSignals signals;

  // Resume: rank 0 fingerprints the base model, picks and reads the checkpoint, checks it
  // fits; its scalars reach every rank in one broadcast.
  std::optional<ResumePoint> resume;
  model::ModelFingerprint fingerprint;
  if (writer) {
    const auto fp_start = Clock::now();
    fingerprint = model::fingerprint_pipeline(cfg.get_string("model.pretrained"), cfg.get_string("model.revision"),
                                              cfg.get_optional_string("model.variant"),
                                              cfg.get_optional_string("model.vae"));
    log.info("base model: " + std::to_string(fingerprint.files.size()) + " weight files, " +
             util::format_bytes(static_cast<double>(fingerprint.total_bytes())) + " (sha256 in " +
             fmt("%.1f", seconds_since(fp_start)) + " s)");
    const char* restarts = std::getenv("SLURM_RESTART_COUNT");
    const bool requeued = restarts && std::atoll(restarts) > 0;
    resume = find_resume_checkpoint(cfg.get_string("checkpoint.resume"), s.checkpoint_dir, requeued, log);
    if (resume) {
      const std::string path = resume->path.string();
      const std::string diff = model::fingerprint_difference(resume->checkpoint.base_model_files, fingerprint.files);
      if (!diff.empty()) {
        throw UsageError(path + " was trained on another base model than " +
                             util::quoted(cfg.get_string("model.pretrained")) + ": " + diff,
                         "resume with the model.pretrained (and model.variant) of the run that wrote it");
      }
      check_resume_compatible(resume->checkpoint, path, adapter_settings(cfg));
    }
  }
  // [resumed, step, seed, world size, loss scale, good steps, skipped steps]
  std::vector<double> head(7, 0.0);
  if (resume) {
    const TrainingState& st = resume->checkpoint.state;
    head = {1.0, double(st.step), double(st.seed), double(st.world_size), st.loss_scale,
            double(st.loss_scale_good_steps), double(st.skipped_steps)};
  }
  comm.host().broadcast(head, 0, "resume state");
  const bool resumed = head[0] > 0;
  const auto head_int = [&](int i) { return static_cast<std::int64_t>(head[static_cast<std::size_t>(i)]); };
  if (resumed) {
    const auto ckpt_seed = static_cast<std::uint64_t>(head_int(2));
    const auto configured = cfg.get_optional_int("train.seed");
    if (configured && static_cast<std::uint64_t>(*configured) != ckpt_seed) {
      log.warn("train.seed = " + std::to_string(*configured) + " differs from the checkpoint's seed " +
               std::to_string(ckpt_seed) + "; the checkpoint's seed is used");
    }
    s.seed = ckpt_seed;
    if (head_int(3) != world) {
      log.warn("the checkpoint was written by " + std::to_string(head_int(3)) + " rank(s), this job has " +
               std::to_string(world) + ": training continues, but the data order and noise now differ from an "
               "uninterrupted run (not bitwise reproducible)");
    }
  }
  TrainSummary summary;
  summary.seed = s.seed;
  std::error_code ec;
  fs::create_directories(s.output, ec);
  if (ec) throw Error("output.dir: cannot create " + util::quoted(s.output.string()) + ": " + ec.message());
  if (writer) {
    std::ofstream toml(s.output / "train_config.toml");
    toml << cfg.to_toml();
    if (!toml) throw Error("cannot write " + (s.output / "train_config.toml").string());
  }
  // One line per rank: where each landed (host, local rank, device) is the first thing to
  // check when a cluster job misbehaves.
  log.info_all_ranks("rank " + std::to_string(rank) + " of " + std::to_string(world) + " on " + host_name() +
                     ", local rank " + std::to_string(local_rank) + ", device " + s.device.str());
  log.info(std::to_string(world) + " rank(s) (" + comm.backend() + " collectives), seed " + std::to_string(s.seed) +
           ", device " + s.device.str() + ", precision " +
           (s.mixed_precision == "no" ? std::string("fp32") : s.mixed_precision));

  // The base pipeline; the VAE stays float32 (diffusers keeps it so: SDXL's VAE overflows in fp16).
  pipeline::PipelineOptions po;
  po.model = cfg.get_string("model.pretrained");
  po.vae = cfg.get_optional_string("model.vae");
  po.variant = cfg.get_optional_string("model.variant");
  po.revision = cfg.get_string("model.revision");
  po.dtype = s.dtype;
  po.vae_dtype = torch::kFloat;
  po.device = s.device;
  auto load_start = Clock::now();
  auto pipe = pipeline::SdxlPipeline::load(po);
  log.info("loaded " + po.model + " in " + fmt("%.1f", seconds_since(load_start)) + " s");
  // On the training device, beside the batches (noise_schedule.h).
  const sampling::NoiseSchedule schedule = sampling::NoiseSchedule(pipe.scheduler_config).to(s.device);

  if (s.prior) ensure_class_images(pipe, cfg, s, log, comm.host());

  // Encode every image and prompt once, then free the encoders.
  PromptTable prompts;
  std::mt19937_64 augment_rng(derive_seed(derive_seed(s.seed, kAugment), static_cast<std::uint64_t>(rank)));
  ImageSetOptions io;
  io.dir = cfg.get_string("data.instance_dir");
  io.key = "data.instance_dir";
  io.prompt = cfg.get_string("data.instance_prompt");
  io.caption_ext = cfg.get_optional_string("data.caption_ext");
  io.resolution = s.resolution;
  io.center_crop = cfg.get_bool("data.center_crop");
  io.random_flip = cfg.get_bool("data.random_flip");
  io.repeats = static_cast<int>(cfg.get_int("data.repeats"));
  io.skip_bad_images = cfg.get_bool("data.skip_bad_images");
  const EncodedImages instance = encode_image_folder(list_images_collective(io, comm.host()), io, pipe.vae, prompts,
                                                     augment_rng, s.device, log, comm.host());
  EncodedImages klass;
  if (s.prior) {
    ImageSetOptions co = io;
    co.dir = *cfg.get_optional_string("data.class_dir");
    co.key = "data.class_dir";
    co.prompt = *cfg.get_optional_string("data.class_prompt");
    co.caption_ext.reset();
    co.repeats = 1;
    klass = encode_image_folder(list_images_collective(co, comm.host()), co, pipe.vae, prompts, augment_rng, s.device,
                                log, comm.host());
  }
  encode_prompts(prompts, pipe, s.dtype);
  const bool train_te = cfg.get_bool("lora.train_text_encoder");
  if (!train_te) {
    // Frozen text encoders: validation prompts are embedded now and the encoders freed.
    std::vector<std::string> validation_prompts = cfg.get_list("validation.prompts");
    if (!validation_prompts.empty()) {
      validation_prompts.push_back(cfg.get_string("validation.negative_prompt"));
      pipe.cache_prompts(validation_prompts);
    }
    pipe.release_text_encoders();
  }
  pipe.vae->release_encoder();

  // LoRA on the UNet's attention projections; everything else frozen.
  const nn::LoraSpec spec = lora_spec(cfg);
  auto init_gen = at::detail::createCPUGenerator(derive_seed(s.seed, kLoraInit));
  const nn::LoraNetwork lora = nn::LoraNetwork::inject(*pipe.unet, spec, init_gen, "UNet");
  // Optional text-encoder LoRA on both CLIP encoders (diffusers' --train_text_encoder).
  nn::LoraNetwork te_lora, te2_lora;
  if (train_te) {
    nn::LoraSpec te_spec = spec;
    te_spec.targets = cfg.get_list("lora.text_encoder_targets");
    te_lora = nn::LoraNetwork::inject(*pipe.text_encoder, te_spec, init_gen, "text_encoder");
    te2_lora = nn::LoraNetwork::inject(*pipe.text_encoder_2, te_spec, init_gen, "text_encoder_2");
  }
  pipe.unet->set_gradient_checkpointing(cfg.get_bool("train.gradient_checkpointing"));
  pipe.unet->set_channels_last(cfg.get_bool("train.channels_last"));
  pipe.unet->set_fused_kernels(fused_kernels(cfg, s.device));
  if (fuse_projections(cfg, s.device)) pipe.unet->fuse_projections();
  const auto unet_params = lora.parameters();
  std::vector<torch::Tensor> te_params = te_lora.parameters();
  for (const auto& p : te2_lora.parameters()) te_params.push_back(p);
  std::vector<torch::Tensor> params = unet_params;
  params.insert(params.end(), te_params.begin(), te_params.end());
  log.info("LoRA rank " + std::to_string(spec.rank) + ", alpha " + util::format_number(spec.alpha) + " on " +
           std::to_string(lora.size()) + " UNet projections" +
           (train_te ? " and " + std::to_string(te_lora.size() + te2_lora.size()) + " text-encoder projections"
                     : std::string()) +
           ": " + std::to_string(lora.num_parameters() + te_lora.num_parameters() + te2_lora.num_parameters()) +
           " trainable parameters");

  const AdamWOptions ao = adamw_options(cfg);
  AdamW optimizer(unet_params, ao);
  // Empty unless the text encoders train; one per network so a checkpoint maps 1:1.
  AdamW te_optimizer(te_lora.parameters(), ao), te2_optimizer(te2_lora.parameters(), ao);
  const double te_lr_ratio = cfg.get_float("lora.text_encoder_lr") / cfg.get_float("train.learning_rate");
  std::vector<TrainedModel> trained{{"unet", &lora, &optimizer, cfg.get_float("train.learning_rate"),
                                     uniform_layers_per_block(pipe.unet->config())}};
  if (train_te) {
    trained.push_back({"text_encoder", &te_lora, &te_optimizer, cfg.get_float("lora.text_encoder_lr"), 0});
    trained.push_back({"text_encoder_2", &te2_lora, &te2_optimizer, cfg.get_float("lora.text_encoder_lr"), 0});
  }

  const std::int64_t batch_size = cfg.get_int("train.batch_size");
  const std::int64_t grad_accum = cfg.get_int("train.grad_accum");
  // diffusers: the dataset has max(instance, class) examples; class rows wrap around.
  const std::int64_t dataset_size = s.prior ? std::max(instance.size(), klass.size()) : instance.size();
  const DataOrder order(dataset_size, batch_size, world, s.seed);
  const std::int64_t steps_per_epoch = (order.batches_per_epoch() + grad_accum - 1) / grad_accum;
  const std::int64_t max_steps = cfg.get_optional_int("train.max_steps").value_or(cfg.get_int("train.epochs") *
                                                                                  steps_per_epoch);
  LrScheduleOptions lo;
  lo.kind = cfg.get_string("train.lr_scheduler");
  lo.base_lr = cfg.get_float("train.learning_rate");
  lo.warmup_steps = cfg.get_int("train.lr_warmup_steps");
  lo.total_steps = max_steps;
  lo.num_cycles = cfg.get_int("train.lr_num_cycles");
  lo.power = cfg.get_float("train.lr_power");
  const LrSchedule lr_schedule(lo);

  const LossOptions loss = loss_options(cfg, pipe.scheduler_config.prediction_type);
  const double noise_offset = cfg.get_float("train.noise_offset");
  const double max_grad_norm = cfg.get_float("train.max_grad_norm");
  const double scaling_factor = pipe.vae->config().scaling_factor;
  DynamicLossScaler scaler(s.mixed_precision == "fp16");
  // Noise and timesteps: a stream per (rank, step), so a run is reproducible for a given
  // world size and a resumed run draws exactly what the uninterrupted one would have.
  const std::uint64_t noise_base = derive_seed(derive_seed(s.seed, kNoise), static_cast<std::uint64_t>(rank));

  std::int64_t start_step = 0;
  std::vector<MetricsRow> metrics_rows;     // rank 0: every step so far, for /metrics
  std::vector<SampleImage> last_samples;    // rank 0: the latest validation images
  if (resumed) {
    restore_adapters(writer ? &resume->checkpoint : nullptr, writer ? resume->path.string() : std::string(), trained,
                     comm.device());
    start_step = head_int(1);
    scaler.restore(head[4], head_int(5));
    summary.skipped_steps = head_int(6);
    if (writer) {
      for (const auto& row : resume->checkpoint.metrics) {
        if (row.step > start_step) continue;
        metrics_rows.push_back(row);
        summary.losses.push_back(row.loss);
      }
      last_samples = resume->checkpoint.samples;
      log.info("resumed from " + resume->path.string() + " at step " + std::to_string(start_step));
      resume.reset();  // free its tensors
    }
  }
  summary.start_step = start_step;
  summary.steps = start_step;
  const std::int64_t log_every = cfg.get_int("logging.every_steps");
  const std::int64_t images_per_step = batch_size * grad_accum * world * (s.prior ? 2 : 1);

  log.info("training " + std::to_string(max_steps) + " steps: " + std::to_string(dataset_size) +
           " examples, batch " + std::to_string(batch_size) + (s.prior ? " (+ as many class images)" : "") +
           " x " + std::to_string(grad_accum) + " accumulation, " + std::to_string(steps_per_epoch) +
           " steps per epoch, prediction " + loss.prediction_type);
  // Analytic model FLOPs, the yardstick for MFU (docs/benchmarks.md).
  const model::UNetFlops flops = model::unet_flops(pipe.unet->config(), s.resolution, s.resolution);
  log.info("UNet model FLOPs per image at " + std::to_string(s.resolution) + " px: forward " +
           fmt("%.4g", flops.forward / 1e9) + " GFLOP, LoRA training step " +
           fmt("%.4g", flops.lora_training_step / 1e9) + " GFLOP");

  // One line per optimizer step, for plotting and tests.
  // On resume it is rewritten from the checkpoint's rows, dropping steps after the checkpoint.
  const fs::path metrics_path = s.output / "metrics.csv";
  std::ofstream metrics;
  if (writer) {
    metrics.open(metrics_path);
    metrics << "step,loss,lr,grad_norm,step_seconds\n";
    for (const auto& row : metrics_rows) write_metrics_row(metrics, row);
    if (!metrics) throw Error("cannot write " + metrics_path.string());
  }
  const BuildFeatures features = build_features();
  auto write_checkpoint = [&](std::int64_t step_done) {
    if (writer) {
      const auto t0 = Clock::now();
      Checkpoint c;
      TrainingState& st = c.state;
      st.step = step_done;
      st.max_steps = max_steps;
      st.data_position = step_done * grad_accum;
      st.epoch = st.data_position / order.batches_per_epoch();
      st.samples_seen = step_done * batch_size * grad_accum * world;
      st.world_size = world;
      st.seed = s.seed;
      st.lr_scheduler = lo.kind;
      st.lr = step_done > 0 ? lr_schedule.lr(step_done - 1) : 0.0;
      st.loss_scale = scaler.scale();
      st.loss_scale_good_steps = scaler.good_steps();
      st.skipped_steps = summary.skipped_steps;
      c.adapters = capture_adapters(trained);
      c.optimizer = ao;
      c.config_toml = cfg.to_toml();
      c.provenance = {{"program_version", features.program_version},
                      {"git_commit", features.git_commit},
                      {"torch_version", features.torch_version},
                      {"hdf5_version", features.hdf5_version},
                      {"created", utc_now()},
                      {"host", host_name()},
                      {"world_size", std::to_string(world)},
                      {"device", s.device.str()},
                      {"mixed_precision", s.mixed_precision},
                      {"base_model", fingerprint.spec},
                      {"base_model_path", fingerprint.root}};
      c.base_model_files = fingerprint.files;
      c.metrics = metrics_rows;
      c.samples = last_samples;
      const fs::path path = save_checkpoint(s.checkpoint_dir, c);
      std::string pruned;
      if (s.keep_last > 0) {
        const auto removed = prune_checkpoints(s.checkpoint_dir, s.keep_last);
        if (!removed.empty()) pruned = ", pruned " + std::to_string(removed.size()) + " old";
      }
      summary.last_checkpoint = path.string();
      std::error_code size_ec;
      const auto bytes = fs::file_size(path, size_ec);
      log.info("checkpoint " + path.string() + " (" + util::format_bytes(static_cast<double>(bytes)) + ", " +
               fmt("%.2f", seconds_since(t0)) + " s" + pruned + ")");
    }
    // Nobody moves on (or exits, on preemption) while rank 0 is still writing.
    comm.host().barrier("checkpoint write");
  };
  auto check_all_weights = [&](std::int64_t step) {
    check_weights_agree(lora, comm.host(), step);
    if (train_te) {
      check_weights_agree(te_lora, comm.host(), step);
      check_weights_agree(te2_lora, comm.host(), step);
    }
  };
  TrainStepParts step_parts;
  step_parts.unet = pipe.unet;
  step_parts.schedule = &schedule;
  step_parts.loss = loss;
  step_parts.unet_lora = &lora;
  step_parts.params = params;
  step_parts.optimizers = {{&optimizer, 1.0}};
  if (train_te) {
    step_parts.optimizers.push_back({&te_optimizer, te_lr_ratio});
    step_parts.optimizers.push_back({&te2_optimizer, te_lr_ratio});
  }
  step_parts.scaler = &scaler;
  step_parts.comm = &comm;
  step_parts.grad_accum = grad_accum;
  step_parts.max_grad_norm = max_grad_norm;
  step_parts.signals = &signals;
  std::optional<StepGraph> step_graph;
  if (s.cuda_graphs) {
    step_parts.graph = &step_graph.emplace(StepGraph::Mode::kCuda);
    log.info("CUDA graphs: the first step records its forward and backward pass, later steps replay it");
  }
  warm_up_gradient_all_reduce(params, comm.device());
  check_all_weights(0);
  const auto train_start = Clock::now();
  double window_loss = 0;
  std::int64_t window_steps = 0;
  auto window_start = Clock::now();
  // Steps whose loss and gradient norm are still on the device (train_step.h). They are read
  // back together, and the run ends if one diverged, before anything built from the weights is
  // written or logged.
  struct PendingStep {
    std::int64_t step;  // 1-based
    double lr, seconds;
    StepResult result;
  };
  std::vector<PendingStep> pending;
  double last_grad_norm = 0;
  auto settle = [&] {
    std::vector<StepResult> results;
    for (const auto& p : pending) results.push_back(p.result);
    const std::vector<StepValues> values = read_step_values(results);
    for (std::size_t i = 0; i < pending.size(); ++i) {
      const PendingStep& p = pending[i];
      check_step_finite(p.step, p.result, values[i]);
      summary.losses.push_back(values[i].loss);
      window_loss += values[i].loss;
      last_grad_norm = values[i].grad_norm;
      if (writer) {
        metrics_rows.push_back({p.step, values[i].loss, p.lr, values[i].grad_norm, p.seconds});
        write_metrics_row(metrics, metrics_rows.back());
      }
    }
    pending.clear();
    if (writer) {
      metrics.flush();
      if (!metrics) throw Error("cannot write " + metrics_path.string());
    }
  };
  for (std::int64_t step = start_step; step < max_steps; ++step) {
    const auto step_start = Clock::now();
    maybe_inject_fault(rank, step + 1);
    auto noise_gen = at::detail::createCPUGenerator(derive_seed(noise_base, static_cast<std::uint64_t>(step)));
    const double lr = lr_schedule.lr(step);
    const double scale_before = scaler.scale();
    const StepResult r = run_train_step(step_parts, step, lr, [&](std::int64_t micro) {
      return assemble_batch(instance, s.prior ? &klass : nullptr, prompts, order.batch(step * grad_accum + micro, rank),
                            noise_gen, noise_offset, schedule.num_train_timesteps(), scaling_factor, s.device,
                            train_te ? &pipe : nullptr);
    }, summary.times);
    if (r.skipped) {
      ++summary.skipped_steps;
      log.warn("step " + std::to_string(step + 1) + ": non-finite fp16 gradients, step skipped; loss scale " +
               util::format_number(scale_before) + " -> " + util::format_number(scaler.scale()));
    }
    summary.steps = step + 1;
    ++window_steps;
    pending.push_back({step + 1, lr, seconds_since(step_start), r});

    const bool last = step + 1 == max_steps;
    // Every rank stops on the same step: the flag went through an all-reduce.
    const bool stop = r.stop_requested;
    const bool log_now = (step + 1) % log_every == 0 || last;
    const bool validate = !last && !stop && validation_due(cfg, step + 1, steps_per_epoch);
    const bool save = !last && (step + 1) % s.checkpoint_every == 0;
    if (log_now || last || stop || validate || save) settle();

    if (log_now) {
      check_all_weights(step + 1);
      const double window_s = seconds_since(window_start);
      const double ips = static_cast<double>(window_steps * images_per_step) / std::max(window_s, 1e-9);
      const double elapsed = seconds_since(train_start);
      const double eta = elapsed / static_cast<double>(step + 1) * static_cast<double>(max_steps - step - 1);
      log.info("step " + std::to_string(step + 1) + "/" + std::to_string(max_steps) + " loss " +
               fmt("%.4f", window_loss / static_cast<double>(window_steps)) + " lr " + fmt("%.3g", lr) +
               " grad_norm " + fmt("%.3g", last_grad_norm) + " " + fmt("%.2f", ips) + " img/s ETA " +
               format_duration(eta));
      window_loss = 0;
      window_steps = 0;
      window_start = Clock::now();
    }
    if (stop && !last) {
      log.warn("preemption requested (" +
               (signals.signal_number() ? std::string(strsignal(signals.signal_number())) : std::string("another rank")) +
               "): checkpointing step " + std::to_string(step + 1) + " and exiting with code " +
               std::to_string(kExitPreempted) + " for the job script to requeue");
      write_checkpoint(step + 1);
      summary.preempted = true;
      summary.peak_rss_bytes = util::peak_rss_bytes();
      return summary;
    }
    if (validate) last_samples = run_validation(pipe, cfg, s, step + 1, log, comm.host());
    if (save) write_checkpoint(step + 1);
  }
  const double train_s = seconds_since(train_start);
  const std::int64_t steps_run = std::max<std::int64_t>(summary.steps - start_step, 1);
  summary.images_per_second = static_cast<double>(steps_run * images_per_step) / std::max(train_s, 1e-9);

  if (start_step < max_steps) {
    if (!cfg.get_list("validation.prompts").empty()) {
      last_samples = run_validation(pipe, cfg, s, summary.steps, log, comm.host());
    }
    write_checkpoint(summary.steps);
  } else {
    log.info("the checkpoint is already at step " + std::to_string(start_step) + " of " + std::to_string(max_steps) +
             ": nothing to train, exporting the LoRA");
  }
  const fs::path lora_path = s.output / "pytorch_lora_weights.safetensors";
  if (writer) {
    std::vector<model::ModelLoraWeights> weights;
    for (const auto& m : trained) weights.push_back(model::lora_weights(*m.network, m.model, m.layers_per_block));
    model::write_lora_file(lora_path.string(), weights, model::LoraFormat::kDiffusers,
                           {{"rank", std::to_string(spec.rank)},
                            {"alpha", util::format_number(spec.alpha)},
                            {"base_model", po.model},
                            {"resolution", std::to_string(s.resolution)},
                            {"steps", std::to_string(summary.steps)},
                            {"software", "sdxl-dreambooth " + std::string(features.program_version)}});
    log.info("wrote " + lora_path.string());
  }
  summary.lora_path = lora_path.string();
  comm.set_context("end of training");
  comm.host().barrier("end of training");

  summary.peak_rss_bytes = util::peak_rss_bytes();
  const auto& t = summary.times;
  log.info("done: " + std::to_string(summary.steps) + " steps in " + format_duration(train_s) + " (" +
           fmt("%.2f", summary.images_per_second) + " img/s; per step: data " +
           fmt("%.3f", t.data_s / steps_run) + " s, forward " + fmt("%.3f", t.forward_s / steps_run) +
           " s, backward " + fmt("%.3f", t.backward_s / steps_run) + " s, all-reduce " +
           fmt("%.3f", t.allreduce_s / steps_run) + " s, optimizer " +
           fmt("%.3f", t.optimizer_s / steps_run) + " s); peak memory " +
           util::format_bytes(static_cast<double>(summary.peak_rss_bytes)) + " RSS; UNet model FLOP rate " +
           fmt("%.4g", summary.images_per_second * flops.lora_training_step / 1e9) + " GFLOP/s; total " +
           format_duration(seconds_since(run_start)));
  return summary;
}

}  // namespace sdxl::train
