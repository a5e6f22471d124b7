#include "sdxl_dreambooth/config/schema.h"

#include "sdxl_dreambooth/util/strings.h"

#include <algorithm>
#include <limits>

namespace sdxl::config {
namespace {

// Small builders keep the table below one line per property.
KeySpec key(std::string name, ValueType type, Value def, std::string help) {
  KeySpec k;
  k.key = std::move(name);
  k.type = type;
  k.default_value = std::move(def);
  k.help = std::move(help);
  return k;
}
KeySpec required(std::string name, ValueType type, std::string help) {
  KeySpec k = key(std::move(name), type, {}, std::move(help));
  k.required = true;
  return k;
}
KeySpec optional(std::string name, ValueType type, std::string unset_means, std::string help) {
  KeySpec k = key(std::move(name), type, {}, std::move(help));
  k.unset_means = std::move(unset_means);
  return k;
}
KeySpec range(KeySpec k, std::optional<double> lo, std::optional<double> hi = std::nullopt) {
  k.min = lo;
  k.max = hi;
  return k;
}
KeySpec positive(KeySpec k) {
  k.min = 0.0;
  k.min_exclusive = true;
  return k;
}
KeySpec choices(KeySpec k, std::vector<std::string> c) {
  k.choices = std::move(c);
  return k;
}
KeySpec nonempty(KeySpec k) {
  k.allow_empty_list = false;
  return k;
}

using T = ValueType;

std::vector<KeySpec> build_schema() {
  const StringList unet_targets{"to_q", "to_k", "to_v", "to_out.0"};
  const StringList text_targets{"q_proj", "k_proj", "v_proj", "out_proj"};
  return {
      // model
      required("model.pretrained", T::kString,
               "Base SDXL pipeline: a diffusers folder, or a hub id (ORG/NAME) resolved offline in the HF cache"),
      optional("model.vae", T::kString, "the pipeline's own vae/",
               "Separate VAE folder or hub id, e.g. madebyollin/sdxl-vae-fp16-fix"),
      optional("model.variant", T::kString, "full-precision files",
               "Weight file variant, e.g. \"fp16\" loads diffusion_pytorch_model.fp16.safetensors"),
      key("model.revision", T::kString, std::string("main"), "Hub revision (branch, tag or commit) for hub ids"),
      // data
      required("data.instance_dir", T::kString, "Folder of subject images (JPEG, PNG)"),
      required("data.instance_prompt", T::kString, "Prompt naming the subject, e.g. \"a photo of sks dog\""),
      optional("data.class_dir", T::kString, "no class images", "Folder of class images for prior preservation"),
      optional("data.class_prompt", T::kString, "no class prompt", "Prompt of the class, e.g. \"a photo of dog\""),
      range(key("data.num_class_images", T::kInt, std::int64_t{100},
                "Class images wanted; missing ones are generated with the base model"), 1),
      range(key("data.resolution", T::kInt, std::int64_t{1024}, "Training resolution in pixels (multiple of 8)"),
            8, 8192),
      key("data.center_crop", T::kBool, false, "Center crop instead of a random crop"),
      key("data.random_flip", T::kBool, false, "Random horizontal flips"),
      range(key("data.repeats", T::kInt, std::int64_t{1}, "How many times each instance image is repeated per epoch"),
            1, 100000),
      optional("data.caption_ext", T::kString, "no captions",
               "Per-image caption file extension (kohya convention, e.g. \".txt\"); replaces the instance prompt"),
      key("data.skip_bad_images", T::kBool, false, "Skip unreadable images with a warning instead of failing"),
      // prior
      key("prior.enabled", T::kBool, false, "Prior preservation loss (needs data.class_dir and data.class_prompt)"),
      range(key("prior.loss_weight", T::kFloat, 1.0, "Weight of the prior preservation loss"), 0.0),
      range(key("prior.sample_steps", T::kInt, std::int64_t{25},
                "Sampling steps of each generated class image (validation.scheduler, guidance 5)"),
            1, 1000),
      range(key("prior.sample_batch_size", T::kInt, std::int64_t{4},
                "Class images per UNet call while generating them (diffusers' --sample_batch_size)"),
            1, 256),
      // lora
      range(key("lora.rank", T::kInt, std::int64_t{4}, "LoRA rank"), 1, 1024),
      positive(optional("lora.alpha", T::kFloat, "= lora.rank", "LoRA alpha; the update is scaled by alpha / rank")),
      nonempty(key("lora.targets", T::kStringList, unet_targets,
                   "UNet attention projections wrapped with LoRA (in every attn1/attn2)")),
      key("lora.train_text_encoder", T::kBool, false, "Also train LoRA on both text encoders"),
      nonempty(key("lora.text_encoder_targets", T::kStringList, text_targets,
                   "Text-encoder projections wrapped with LoRA when lora.train_text_encoder is set")),
      positive(key("lora.text_encoder_lr", T::kFloat, 5e-6,
                   "Peak learning rate of the text-encoder adapters (diffusers' --text_encoder_lr); same schedule")),
      // train
      range(key("train.batch_size", T::kInt, std::int64_t{4}, "Images per rank per step"), 1, 4096),
      range(key("train.grad_accum", T::kInt, std::int64_t{1}, "Gradient accumulation steps"), 1, 4096),
      range(optional("train.max_steps", T::kInt, "from train.epochs",
                     "Total optimizer steps; overrides train.epochs when set"), 1),
      range(key("train.epochs", T::kInt, std::int64_t{1}, "Epochs, used when train.max_steps is unset"), 1),
      positive(key("train.learning_rate", T::kFloat, 1e-4, "Peak learning rate")),
      choices(key("train.lr_scheduler", T::kString, std::string("constant"), "Learning-rate schedule"),
              {"constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial"}),
      range(key("train.lr_warmup_steps", T::kInt, std::int64_t{0}, "Warm-up steps of the schedule"), 0),
      range(key("train.lr_num_cycles", T::kInt, std::int64_t{1}, "Hard restarts of cosine_with_restarts"), 1),
      positive(key("train.lr_power", T::kFloat, 1.0, "Power of the polynomial schedule")),
      range(optional("train.seed", T::kInt, "a random seed, logged and saved in checkpoints",
                     "Seed of every random stream (data order, noise, timesteps, LoRA init)"),
            0, 4294967295.0),
      choices(key("train.device", T::kString, std::string("auto"),
                  "Where training runs: auto picks cuda when LibTorch sees a GPU, else cpu"),
              {"auto", "cpu", "cuda"}),
      choices(key("train.mixed_precision", T::kString, std::string("no"),
                  "Precision of the frozen weights and activations; LoRA weights stay fp32"),
              {"no", "fp16", "bf16"}),
      key("train.gradient_checkpointing", T::kBool, false, "Recompute activations in backward to save memory"),
      optional("train.fuse_projections", T::kBool, "true on CUDA, false on the CPU",
               "One GEMM for the attention projections that read the same input (q/k/v, and k/v of "
               "cross-attention), frozen weights and LoRA sides each; same results and memory (measured "
               "on an H200 in bf16 at 1024 px: 12 % more images/s at batch 8, 17 % at batch 1; 5 % "
               "slower on CPUs at full size)"),
      key("train.cudnn_benchmark", T::kBool, false,
          "Let cuDNN time its convolution algorithms on the first step of each shape and keep the "
          "fastest (PyTorch's torch.backends.cudnn.benchmark); CUDA only"),
      key("train.cuda_graphs", T::kBool, false,
          "Record each micro-batch's forward and backward pass once as a CUDA graph and replay it on "
          "later steps, so the host launches one graph instead of thousands of kernels (for small "
          "batches, where launching bounds the step); CUDA only, not with fp16 or "
          "lora.train_text_encoder"),
      key("train.fused_kernels", T::kBool, false,
          "Run GEGLU's product and its gradient (the UNet's feed-forward) as one CUDA kernel each "
          "instead of ATen's two and four; CUDA only, in builds compiled with a CUDA compiler "
          "(sdxl-dreambooth version says); off until measured on a GPU"),
      key("train.channels_last", T::kBool, false,
          "UNet convolutions in channels-last (NHWC) layout (measured slower on an H200 and on CPUs)"),
      positive(optional("train.snr_gamma", T::kFloat, "plain MSE",
                        "Min-SNR-gamma loss weighting (5.0 is the recommended value)")),
      range(key("train.noise_offset", T::kFloat, 0.0, "Noise offset (diffusers' --noise_offset)"), 0.0, 1.0),
      range(key("train.max_grad_norm", T::kFloat, 1.0, "Gradient clipping norm over all LoRA parameters (0: no clipping)"), 0.0),
      choices(optional("train.prediction_type", T::kString, "from scheduler_config.json",
                       "What the UNet predicts"),
              {"epsilon", "v_prediction"}),
      // optimizer
      choices(key("optimizer.kind", T::kString, std::string("adamw"), "Optimizer"), {"adamw"}),
      range(key("optimizer.beta1", T::kFloat, 0.9, "AdamW beta1"), 0.0, 0.999999),
      range(key("optimizer.beta2", T::kFloat, 0.999, "AdamW beta2"), 0.0, 0.999999),
      range(key("optimizer.weight_decay", T::kFloat, 1e-4, "AdamW decoupled weight decay"), 0.0),
      positive(key("optimizer.eps", T::kFloat, 1e-8, "AdamW epsilon")),
      // checkpoint
      optional("checkpoint.dir", T::kString, "<output.dir>/checkpoints", "Folder of the HDF5 checkpoints"),
      range(key("checkpoint.every_steps", T::kInt, std::int64_t{500}, "Write a checkpoint every N steps"), 1),
      range(optional("checkpoint.keep_last", T::kInt, "keep every checkpoint",
                     "Keep only the newest N checkpoints (pruned after the new one is committed)"),
            1),
      key("checkpoint.resume", T::kString, std::string("none"),
          "\"none\", \"latest\" (newest in checkpoint.dir) or a checkpoint path; a requeued Slurm job resumes latest"),
      // validation
      key("validation.prompts", T::kStringList, StringList{}, "Prompts of the validation images (none: no validation)"),
      key("validation.negative_prompt", T::kString, std::string(""), "Negative prompt of the validation images"),
      range(optional("validation.every_steps", T::kInt, "see every_epochs", "Validate every N steps"), 1),
      range(optional("validation.every_epochs", T::kInt, "50 when every_steps is unset too",
                     "Validate every N epochs (diffusers' --validation_epochs)"),
            1),
      range(key("validation.num_images", T::kInt, std::int64_t{4}, "Images per validation prompt"), 1, 64),
      range(key("validation.steps", T::kInt, std::int64_t{25}, "Sampling steps of a validation image"), 1, 1000),
      range(key("validation.batch_size", T::kInt, std::int64_t{1},
                "Validation images per UNet call (1 keeps the extra memory beside training smallest)"),
            1, 256),
      range(key("validation.guidance_scale", T::kFloat, 5.0, "Classifier-free guidance (1.0 disables it)"), 0.0),
      choices(key("validation.scheduler", T::kString, std::string("dpmpp2m"), "Sampler of the validation images"),
              {"dpmpp2m", "euler", "euler_karras"}),
      range(optional("validation.seed", T::kInt, "= train.seed", "Seed of the validation images"), 0, 4294967295.0),
      range(optional("validation.resolution", T::kInt, "= data.resolution", "Size of validation images (multiple of 8)"),
            8, 8192),
      // output
      key("output.dir", T::kString, std::string("lora-dreambooth-model"),
          "Output folder: checkpoints, samples, the exported LoRA"),
      // distributed
      choices(key("distributed.backend", T::kString, std::string("auto"),
                  "Collectives: nccl on CUDA builds with GPUs, mpi otherwise (auto picks)"),
              {"auto", "nccl", "mpi"}),
      positive(key("distributed.timeout_s", T::kFloat, 600.0,
                   "Deadline of every collective; a rank stuck longer ends the job")),
      // logging
      range(key("logging.every_steps", T::kInt, std::int64_t{10}, "Log loss, lr and speed every N steps"), 1),
      choices(key("logging.progress", T::kString, std::string("auto"),
                  "Progress display: a bar on a terminal, plain lines in Slurm logs (auto picks)"),
              {"auto", "bar", "lines", "off"}),
      choices(key("logging.level", T::kString, std::string("info"), "Least severe message printed"),
              {"debug", "info", "warn", "error"}),
  };
}

}  // namespace

const char* type_name(ValueType type) {
  switch (type) {
    case ValueType::kBool: return "boolean";
    case ValueType::kInt: return "integer";
    case ValueType::kFloat: return "number";
    case ValueType::kString: return "string";
    case ValueType::kStringList: return "list of strings";
  }
  return "?";
}

std::string KeySpec::expectation() const {
  std::string s;
  switch (type) {
    case ValueType::kBool: s = "true or false"; break;
    case ValueType::kInt: s = "an integer"; break;
    case ValueType::kFloat: s = "a number"; break;
    case ValueType::kString: s = "a string"; break;
    case ValueType::kStringList: s = allow_empty_list ? "a list of strings" : "a non-empty list of strings"; break;
  }
  if (!choices.empty()) {
    s = (type == ValueType::kStringList ? "a list of: " : "one of ") + util::join(choices, ", ");
  }
  auto num = [&](double d) { return type == ValueType::kInt ? std::to_string(static_cast<long long>(d))
                                                            : util::format_number(d); };
  if (min && max) {
    s += " in [" + num(*min) + ", " + num(*max) + "]";
  } else if (min) {
    s += (min_exclusive ? " > " : " >= ") + num(*min);
  } else if (max) {
    s += " <= " + num(*max);
  }
  return s;
}

const std::vector<SectionSpec>& sections() {
  static const std::vector<SectionSpec> kSections{
      {"model", "The base model"},
      {"data", "Training images and prompts"},
      {"prior", "Prior preservation"},
      {"lora", "The LoRA adapter"},
      {"train", "The training loop"},
      {"optimizer", "The optimizer"},
      {"checkpoint", "HDF5 checkpoints and resume"},
      {"validation", "Validation images during training"},
      {"output", "Where results go"},
      {"distributed", "Multi-rank training"},
      {"logging", "Log output"},
  };
  return kSections;
}

const std::vector<KeySpec>& schema() {
  static const std::vector<KeySpec> kSchema = build_schema();
  return kSchema;
}

const KeySpec* find_key(const std::string& key) {
  for (const KeySpec& k : schema()) {
    if (k.key == key) return &k;
  }
  return nullptr;
}

std::string nearest_key(const std::string& key) {
  std::vector<std::string> names;
  for (const KeySpec& k : schema()) names.push_back(k.key);
  return util::nearest(key, names);
}

std::string nearest_section(const std::string& section) {
  std::vector<std::string> names;
  for (const SectionSpec& s : sections()) names.push_back(s.name);
  return util::nearest(section, names);
}

}  // namespace sdxl::config
