#include "sdxl_dreambooth/config/schema.h"

#include "sdxl_dreambooth/util/strings.h"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <variant>

namespace sdxl::config {
namespace {

// A key bound to its RunConfig member: the value type follows from the member's type, an
// optional key has a std::optional member.
template <typename F> struct FieldType;
template <> struct FieldType<bool> { static constexpr ValueType kType = ValueType::kBool; };
template <> struct FieldType<std::int64_t> { static constexpr ValueType kType = ValueType::kInt; };
template <> struct FieldType<double> { static constexpr ValueType kType = ValueType::kFloat; };
template <> struct FieldType<std::string> { static constexpr ValueType kType = ValueType::kString; };
template <> struct FieldType<StringList> { static constexpr ValueType kType = ValueType::kStringList; };
template <typename F> struct FieldType<std::optional<F>> : FieldType<F> {};

template <typename F> Value to_value(const F& f) { return Value(f); }
template <typename F> Value to_value(const std::optional<F>& f) { return f ? Value(*f) : Value(); }
// Required and defaulted keys are always set once validated; reading them unset is a bug.
template <typename F> void from_value(F& f, const Value& v) { f = std::get<F>(v); }
template <typename F> void from_value(std::optional<F>& f, const Value& v) {
  if (is_set(v)) {
    f = std::get<F>(v);
  } else {
    f.reset();
  }
}

struct Binding {
  std::string key;
  ValueType type;
  std::function<Value(const RunConfig&)> read;
  std::function<void(RunConfig&, const Value&)> write;
};

template <typename S, typename F>
Binding bind_key(std::string key, S RunConfig::*section, F S::*field) {
  return {std::move(key), FieldType<F>::kType,
          [section, field](const RunConfig& r) { return to_value(r.*section.*field); },
          [section, field](RunConfig& r, const Value& v) { from_value(r.*section.*field, v); }};
}

// KEY(train, batch_size): the key "train.batch_size", bound to RunConfig::train.batch_size.
#define KEY(section, name) bind_key(#section "." #name, &RunConfig::section, &decltype(RunConfig::section)::name)

// Small builders keep the table below one line per property.
KeySpec key(Binding b, Value def, std::string help) {
  KeySpec k;
  k.key = std::move(b.key);
  k.type = b.type;
  k.read = std::move(b.read);
  k.write = std::move(b.write);
  k.default_value = std::move(def);
  k.help = std::move(help);
  return k;
}
KeySpec required(Binding b, std::string help) {
  KeySpec k = key(std::move(b), {}, std::move(help));
  k.required = true;
  return k;
}
KeySpec optional(Binding b, std::string unset_means, std::string help) {
  KeySpec k = key(std::move(b), {}, std::move(help));
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
KeySpec path(KeySpec k, std::string what) {
  k.path = std::move(what);
  return k;
}
KeySpec nonempty(KeySpec k) {
  k.allow_empty_list = false;
  return k;
}

std::vector<KeySpec> build_schema() {
  const StringList unet_targets{"to_q", "to_k", "to_v", "to_out.0"};
  const StringList text_targets{"q_proj", "k_proj", "v_proj", "out_proj"};
  return {
      // model
      path(required(KEY(model, pretrained),
                    "Base SDXL pipeline: a diffusers folder, or a hub id (ORG/NAME) resolved offline in the HF cache"),
           "a folder path or hub id"),
      path(optional(KEY(model, vae), "the pipeline's own vae/",
                    "Separate VAE folder or hub id, e.g. madebyollin/sdxl-vae-fp16-fix"),
           "a folder path or hub id"),
      optional(KEY(model, variant), "full-precision files",
               "Weight file variant, e.g. \"fp16\" loads diffusion_pytorch_model.fp16.safetensors"),
      key(KEY(model, revision), std::string("main"), "Hub revision (branch, tag or commit) for hub ids"),
      // data
      path(required(KEY(data, instance_dir), "Folder of subject images (JPEG, PNG)"), "a folder path"),
      required(KEY(data, instance_prompt), "Prompt naming the subject, e.g. \"a photo of sks dog\""),
      path(optional(KEY(data, class_dir), "no class images", "Folder of class images for prior preservation"),
           "a folder path"),
      optional(KEY(data, class_prompt), "no class prompt", "Prompt of the class, e.g. \"a photo of dog\""),
      range(key(KEY(data, num_class_images), std::int64_t{100},
                "Class images wanted; missing ones are generated with the base model"), 1, 100000),
      range(key(KEY(data, resolution), std::int64_t{1024}, "Training resolution in pixels (multiple of 8)"),
            8, 8192),
      key(KEY(data, center_crop), false, "Center crop instead of a random crop"),
      key(KEY(data, random_flip), false, "Random horizontal flips"),
      range(key(KEY(data, repeats), std::int64_t{1}, "How many times each instance image is repeated per epoch"),
            1, 100000),
      optional(KEY(data, caption_ext), "no captions",
               "Per-image caption file extension (kohya convention, e.g. \".txt\"); replaces the instance prompt"),
      key(KEY(data, skip_bad_images), false,
          "Skip unreadable images (and bad metadata rows) with a warning instead of failing"),
      choices(key(KEY(data, format), std::string("auto"),
                  "Layout of data.instance_dir: imagefolder (metadata.jsonl / metadata.csv, diffusers), kohya "
                  "(<repeats>_<name> subfolders), folder (images with optional caption files); auto picks by what "
                  "the folder holds"),
              {"auto", "folder", "imagefolder", "kohya"}),
      key(KEY(data, caption_column), std::string("text"),
          "Caption column of imagefolder metadata (diffusers' --caption_column)"),
      range(key(KEY(data, caption_dropout), 0.0,
                "Probability that an instance example trains on the empty caption, encoded (kohya's "
                "--caption_dropout_rate)"),
            0.0, 1.0),
      path(optional(KEY(data, cache_dir), "latents are encoded at every start and held in memory",
                    "Folder (on the shared filesystem) that keeps the encoded latents of training and class "
                    "images, keyed by the base model, each image's content and the preprocessing, so later runs "
                    "encode nothing again"),
           "a folder path"),
      key(KEY(data, shuffle_tags), false,
          "Shuffle the comma-separated tags of each instance caption every time it is drawn (kohya's "
          "--shuffle_caption); the text encoders then stay loaded and encode each step's captions"),
      range(key(KEY(data, keep_tokens), std::int64_t{0},
                "Leading tags that data.shuffle_tags keeps in place (kohya's --keep_tokens), e.g. the trigger word"),
            0, 1000),
      key(KEY(data, caption_separator), std::string(","),
          "What separates the tags of a caption for data.shuffle_tags (kohya's --caption_separator)"),
      key(KEY(data, bucketing), false,
          "Aspect-ratio buckets (kohya's scheme): each image trains at the bucket of about resolution^2 pixels "
          "nearest its aspect ratio, every step's global batch from one bucket"),
      range(optional(KEY(data, min_bucket_resolution), "= data.resolution / 4",
                     "Shortest bucket side in pixels (kohya's --min_bucket_reso), a multiple of data.bucket_step"),
            8, 8192),
      range(optional(KEY(data, max_bucket_resolution), "= 2 x data.resolution",
                     "Longest bucket side in pixels (kohya's --max_bucket_reso), a multiple of data.bucket_step"),
            8, 16384),
      range(key(KEY(data, bucket_step), std::int64_t{64},
                "Bucket sides are multiples of this (kohya's --bucket_reso_steps; a multiple of 8)"),
            8, 1024),
      // prior
      key(KEY(prior, enabled), false, "Prior preservation loss (needs data.class_dir and data.class_prompt)"),
      range(key(KEY(prior, loss_weight), 1.0, "Weight of the prior preservation loss"), 0.0),
      range(key(KEY(prior, sample_steps), std::int64_t{25},
                "Sampling steps of each generated class image (validation.scheduler, guidance 5)"),
            1, 1000),
      range(key(KEY(prior, sample_batch_size), std::int64_t{4},
                "Class images per UNet call while generating them (diffusers' --sample_batch_size)"),
            1, 256),
      choices(optional(KEY(prior, generation_precision), "the training precision (train.mixed_precision)",
                       "Precision of the model that draws the class images (diffusers' "
                       "--prior_generation_precision); another than the training one loads a second copy while "
                       "they are drawn"),
              {"fp32", "fp16", "bf16"}),
      // lora
      range(key(KEY(lora, rank), std::int64_t{4}, "LoRA rank"), 1, 1024),
      positive(optional(KEY(lora, alpha), "= lora.rank", "LoRA alpha; the update is scaled by alpha / rank")),
      nonempty(key(KEY(lora, targets), unet_targets,
                   "UNet projections wrapped with LoRA, by the last parts of their module paths: to_q, to_k, to_v, "
                   "to_out.0 (every attn1/attn2), proj_in, proj_out, ff.net.0.proj, ff.net.2")),
      choices(optional(KEY(lora, preset), "lora.targets",
                       "A named set of UNet targets instead of lora.targets: attention (to_q, to_k, to_v, to_out.0; "
                       "diffusers), kohya (also proj_in, proj_out, ff.net.0.proj, ff.net.2: every linear layer "
                       "of the transformer blocks, as kohya's networks.lora) or kohya_conv (kohya's LoCon, "
                       "--network_args conv_dim: also the resnets' conv1, conv2, conv_shortcut, time_emb_proj and "
                       "the down/upsamplers' convolutions)"),
              {"attention", "kohya", "kohya_conv"}),
      range(optional(KEY(lora, conv_rank), "= lora.rank",
                     "Rank of the adapters on 3x3 convolutions (kohya's conv_dim); 1x1 convolutions and linear "
                     "layers take lora.rank"),
            1, 1024),
      positive(optional(KEY(lora, conv_alpha), "= lora.conv_rank",
                        "Alpha of the 3x3 convolutions' adapters (kohya's conv_alpha)")),
      optional(KEY(lora, blocks), "the whole UNet",
               "Train only adapters inside these UNet blocks, as module-path prefixes such as "
               "up_blocks.0.attentions.0 (the advanced script's --lora_unet_blocks; B-LoRA)"),
      key(KEY(lora, use_dora), false,
          "DoRA (diffusers' --use_dora, peft semantics): also train a magnitude per output feature of each "
          "wrapped projection"),
      range(key(KEY(lora, dropout), 0.0,
                "Dropout on the adapters' input while training (peft's lora_dropout; diffusers' --lora_dropout "
                "after 0.27)"),
            0.0, 0.999),
      key(KEY(lora, train_text_encoder), false, "Also train LoRA on both text encoders"),
      nonempty(key(KEY(lora, text_encoder_targets), text_targets,
                   "Text-encoder projections wrapped with LoRA when lora.train_text_encoder is set")),
      range(positive(key(KEY(lora, text_encoder_lr), 5e-6,
                   "Peak learning rate of the text-encoder adapters (diffusers' --text_encoder_lr); same schedule")),
            0.0, 1e30),
      key(KEY(lora, train_text_encoder_ti), false,
          "Pivotal tuning (the advanced diffusers script's --train_text_encoder_ti): each lora.token_abstraction "
          "becomes new tokens whose embeddings both text encoders learn next to the UNet's LoRA (learning rate "
          "lora.text_encoder_lr); saved as <output.name>_emb.safetensors"),
      key(KEY(lora, token_abstraction), std::string("TOK"),
          "The stand-in word(s) of the subject in prompts and captions, comma-separated (\"TOK\" or \"TOK,TOK2\"); "
          "with lora.train_text_encoder_ti each is replaced by its new tokens <s0><s1>..."),
      range(key(KEY(lora, num_new_tokens_per_abstraction), std::int64_t{2},
                "New tokens per abstraction (diffusers' --num_new_tokens_per_abstraction): TOK -> <s0><s1>"),
            1, 32),
      range(positive(key(KEY(lora, train_text_encoder_ti_frac), 0.5,
                         "Share of the steps during which the new embeddings train (diffusers' "
                         "--train_text_encoder_ti_frac); frozen afterwards")),
            0.0, 1.0),
      // train
      range(key(KEY(train, batch_size), std::int64_t{4}, "Images per rank per step"), 1, 4096),
      range(key(KEY(train, grad_accum), std::int64_t{1}, "Gradient accumulation steps"), 1, 4096),
      range(optional(KEY(train, max_steps), "from train.epochs",
                     "Total optimizer steps; overrides train.epochs when set"), 1),
      range(key(KEY(train, epochs), std::int64_t{1}, "Epochs, used when train.max_steps is unset"), 1),
      // Bounded so that it converts to float32 (an absurd rate still trains, and diverges).
      range(positive(key(KEY(train, learning_rate), 1e-4, "Peak learning rate")), 0.0, 1e30),
      key(KEY(train, scale_lr), false,
          "Multiply train.learning_rate by train.grad_accum x train.batch_size x ranks (diffusers' --scale_lr; "
          "lora.text_encoder_lr is not scaled)"),
      choices(key(KEY(train, lr_scheduler), std::string("constant"), "Learning-rate schedule"),
              {"constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial"}),
      range(key(KEY(train, lr_warmup_steps), std::int64_t{0}, "Warm-up steps of the schedule"), 0),
      range(key(KEY(train, lr_num_cycles), std::int64_t{1}, "Hard restarts of cosine_with_restarts"), 1),
      positive(key(KEY(train, lr_power), 1.0, "Power of the polynomial schedule")),
      range(optional(KEY(train, seed), "a random seed, logged and saved in checkpoints",
                     "Seed of every random stream (data order, noise, timesteps, LoRA init)"),
            0, 4294967295.0),
      choices(key(KEY(train, device), std::string("auto"),
                  "Where training runs: auto picks cuda when LibTorch sees a GPU, else cpu"),
              {"auto", "cpu", "cuda"}),
      choices(key(KEY(train, mixed_precision), std::string("no"),
                  "Precision of the frozen weights and activations; LoRA weights stay fp32"),
              {"no", "fp16", "bf16"}),
      key(KEY(train, gradient_checkpointing), false, "Recompute activations in backward to save memory"),
      optional(KEY(train, fuse_projections), "true on CUDA, false on the CPU",
               "One GEMM for the attention projections that read the same input (q/k/v, and k/v of "
               "cross-attention), frozen weights and LoRA sides each; same results and memory (measured "
               "on an H200 in bf16 at 1024 px: 12 % more images/s at batch 8, 17 % at batch 1; 5 % "
               "slower on CPUs at full size)"),
      key(KEY(train, cudnn_benchmark), false,
          "Let cuDNN time its convolution algorithms on the first step of each shape and keep the "
          "fastest (PyTorch's torch.backends.cudnn.benchmark); CUDA only"),
      key(KEY(train, edm_style), false,
          "EDM-style training on the base's Euler schedule (diffusers' --do_edm_style_training); on by itself for "
          "an EDM base (scheduler class EDM*, e.g. Playground v2.5)"),
      key(KEY(train, allow_tf32), false,
          "Let CUDA matmuls and cuDNN convolutions use TF32 on Ampere and later (diffusers' --allow_tf32); false "
          "keeps PyTorch's defaults (matmuls in full float32, cuDNN TF32 on)"),
      key(KEY(train, cuda_graphs), false,
          "Record each micro-batch's forward and backward pass once as a CUDA graph and replay it on "
          "later steps, so the host launches one graph instead of thousands of kernels (for small "
          "batches, where launching bounds the step); CUDA only, not with fp16 or "
          "lora.train_text_encoder"),
      key(KEY(train, fused_kernels), false,
          "Run GEGLU's product and its gradient (the UNet's feed-forward) as one CUDA kernel each "
          "instead of ATen's two and four; CUDA only, in builds compiled with a CUDA compiler "
          "(sdxl-dreambooth version says); off until measured on a GPU"),
      key(KEY(train, channels_last), false,
          "UNet convolutions in channels-last (NHWC) layout (measured slower on an H200 and on CPUs)"),
      positive(optional(KEY(train, snr_gamma), "plain MSE",
                        "Min-SNR-gamma loss weighting (5.0 is the recommended value)")),
      range(key(KEY(train, noise_offset), 0.0, "Noise offset (diffusers' --noise_offset)"), 0.0, 1.0),
      range(key(KEY(train, multires_noise_iterations), std::int64_t{0},
                "Multi-resolution (pyramid) noise levels added to the noise, 0 for none (kohya's "
                "--multires_noise_iterations; 6 to 10 is typical)"),
            0, 64),
      range(key(KEY(train, multires_noise_discount), 0.3,
                "Weight of each coarser pyramid level relative to the last (kohya's --multires_noise_discount)"),
            0.0, 1.0),
      range(key(KEY(train, min_timestep), std::int64_t{0},
                "Smallest timestep drawn for training (kohya's --min_timestep)"),
            0, 100000),
      range(optional(KEY(train, max_timestep), "the scheduler's num_train_timesteps",
                     "Timesteps are drawn below this (kohya's --max_timestep, exclusive)"),
            1, 100000),
      choices(key(KEY(train, loss), std::string("l2"),
                  "Loss: l2 (MSE, diffusers), huber or smooth_l1 (kohya's pseudo-Huber losses with train.huber_c)"),
              {"l2", "huber", "smooth_l1"}),
      range(key(KEY(train, huber_c), 0.1, "Huber threshold c of train.loss = huber / smooth_l1 (kohya's --huber_c)"),
            1e-6, 1.0),
      choices(key(KEY(train, huber_schedule), std::string("snr"),
                  "How c varies with the timestep (kohya's --huber_schedule): snr, exponential or constant"),
              {"snr", "exponential", "constant"}),
      range(key(KEY(train, max_grad_norm), 1.0, "Gradient clipping norm over all LoRA parameters (0: no clipping)"), 0.0),
      choices(optional(KEY(train, prediction_type), "from scheduler_config.json",
                       "What the UNet predicts"),
              {"epsilon", "v_prediction"}),
      // optimizer
      choices(key(KEY(optimizer, kind), std::string("adamw"),
                  "Optimizer: adamw (torch.optim.AdamW) or prodigy (prodigyopt 1.1.2; set train.learning_rate "
                  "near 1.0)"),
              {"adamw", "prodigy"}),
      range(key(KEY(optimizer, beta1), 0.9, "beta1 (AdamW and Prodigy)"), 0.0, 0.999999),
      range(key(KEY(optimizer, beta2), 0.999, "beta2 (AdamW and Prodigy)"), 0.0, 0.999999),
      range(key(KEY(optimizer, weight_decay), 1e-4, "Decoupled weight decay of the UNet adapters"), 0.0, 1.0),
      range(key(KEY(optimizer, text_encoder_weight_decay), 1e-3,
                "Weight decay of the text-encoder adapters (diffusers' --adam_weight_decay_text_encoder)"),
            0.0, 1.0),
      range(key(KEY(optimizer, eps), 1e-8, "Epsilon (above float32's smallest normal number)"), 1e-30, 1.0),
      range(optional(KEY(optimizer, prodigy_beta3), "sqrt(optimizer.beta2)",
                     "Prodigy: decay of its step-size estimate's running sums"),
            0.0, 0.999999),
      key(KEY(optimizer, prodigy_decouple), true, "Prodigy: decoupled (AdamW-style) weight decay"),
      key(KEY(optimizer, prodigy_use_bias_correction), true,
          "Prodigy: Adam's bias correction (diffusers' script default; prodigyopt's own default is false)"),
      key(KEY(optimizer, prodigy_safeguard_warmup), true,
          "Prodigy: keep the estimate from growing too fast under warmup (diffusers' script default)"),
      range(key(KEY(optimizer, prodigy_d0), 1e-6, "Prodigy: initial step-size estimate d0"), 1e-30, 1.0),
      range(key(KEY(optimizer, prodigy_d_coef), 1.0, "Prodigy: multiplier of the estimate"), 1e-6, 1e6),
      range(optional(KEY(optimizer, prodigy_growth_rate), "unbounded",
                     "Prodigy: largest factor by which the estimate may grow per step"),
            1.0, 1e30),
      // checkpoint
      path(optional(KEY(checkpoint, dir), "<output.dir>/checkpoints", "Folder of the HDF5 checkpoints"),
           "a folder path"),
      range(key(KEY(checkpoint, every_steps), std::int64_t{500}, "Write a checkpoint every N steps"), 1),
      range(optional(KEY(checkpoint, keep_last), "keep every checkpoint",
                     "Keep only the newest N checkpoints (pruned after the new one is committed)"),
            1),
      path(key(KEY(checkpoint, resume), std::string("none"),
               "\"none\", \"latest\" (newest in checkpoint.dir) or a checkpoint path; a requeued Slurm job resumes "
               "latest"),
           "\"none\", \"latest\" or a checkpoint path"),
      // validation
      key(KEY(validation, prompts), StringList{}, "Prompts of the validation images (none: no validation)"),
      key(KEY(validation, negative_prompt), std::string(""), "Negative prompt of the validation images"),
      range(optional(KEY(validation, every_steps), "see every_epochs", "Validate every N steps"), 1),
      range(optional(KEY(validation, every_epochs), "50 when every_steps is unset too",
                     "Validate every N epochs (diffusers' --validation_epochs)"),
            1),
      range(key(KEY(validation, num_images), std::int64_t{4}, "Images per validation prompt"), 1, 64),
      range(key(KEY(validation, steps), std::int64_t{25}, "Sampling steps of a validation image"), 1, 1000),
      range(key(KEY(validation, batch_size), std::int64_t{1},
                "Validation images per UNet call (1 keeps the extra memory beside training smallest)"),
            1, 256),
      range(key(KEY(validation, guidance_scale), 5.0, "Classifier-free guidance (1.0 disables it)"), 0.0, 1000.0),
      choices(key(KEY(validation, scheduler), std::string("dpmpp2m"), "Sampler of the validation images"),
              {"dpmpp2m", "euler", "euler_karras"}),
      range(optional(KEY(validation, seed), "= train.seed", "Seed of the validation images"), 0, 4294967295.0),
      range(optional(KEY(validation, resolution), "= data.resolution", "Size of validation images (multiple of 8)"),
            8, 8192),
      key(KEY(validation, compare_base), true,
          "At the last validation also draw the prompts without the LoRA (same seeds): samples/base/ and "
          "compare.png (base | fine-tuned), shown in the model card"),
      // output
      path(key(KEY(output, dir), std::string("lora-dreambooth-model"),
               "Output folder: checkpoints, samples, the exported LoRA"),
           "a folder path"),
      key(KEY(output, kohya), true,
          "Also write the LoRA with kohya's names and ss_* metadata as <output.name>.safetensors, the file "
          "ComfyUI and AUTOMATIC1111 load (pytorch_lora_weights.safetensors, for diffusers, is always written)"),
      optional(KEY(output, name), "the name of the output.dir folder",
               "Name of the run: the kohya LoRA file is <name>.safetensors and its ss_output_name"),
      key(KEY(output, license), std::string("openrail++"),
          "License of the model card (output.dir/README.md): an SPDX id such as \"mit\", or \"openrail++\" "
          "(SDXL's)"),
      // distributed
      choices(key(KEY(distributed, backend), std::string("auto"),
                  "Collectives: nccl on CUDA builds with GPUs, mpi otherwise (auto picks)"),
              {"auto", "nccl", "mpi"}),
      positive(key(KEY(distributed, timeout_s), 600.0,
                   "Deadline of every collective; a rank stuck longer ends the job")),
      // logging
      range(key(KEY(logging, every_steps), std::int64_t{10}, "Log loss, lr and speed every N steps"), 1),
      key(KEY(logging, tensorboard), true,
          "TensorBoard event files in output.dir/logs/ (rank 0): per-step scalars, validation images, the config"),
      choices(key(KEY(logging, progress), std::string("auto"),
                  "Progress display: a bar on a terminal, plain lines in Slurm logs (auto picks)"),
              {"auto", "bar", "lines", "off"}),
      choices(key(KEY(logging, level), std::string("info"), "Least severe message printed"),
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
  if (!path.empty()) s = path;
  if (!choices.empty()) {
    s = (type == ValueType::kStringList ? "a list of: " : "one of ") + util::join(choices, ", ");
  }
  auto num = [&](double d) { return type == ValueType::kInt ? std::to_string(static_cast<long long>(d))
                                                            : util::format_number(d); };
  if (min && max) {
    s += std::string(" in ") + (min_exclusive ? "(" : "[") + num(*min) + ", " + num(*max) + "]";
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

template <typename F>
SubsetKeySpec bind_subset_key(std::string name, std::optional<F> DataSubset::*field) {
  return {name, find_key("data." + name), [field](const DataSubset& s) { return to_value(s.*field); },
          [field](DataSubset& s, const Value& v) { from_value(s.*field, v); }};
}

#define SUBSET_KEY(name) bind_subset_key(#name, &DataSubset::name)

const std::vector<SubsetKeySpec>& subset_schema() {
  static const std::vector<SubsetKeySpec> kKeys{
      SUBSET_KEY(instance_dir), SUBSET_KEY(instance_prompt), SUBSET_KEY(format),     SUBSET_KEY(caption_ext),
      SUBSET_KEY(caption_column), SUBSET_KEY(repeats),       SUBSET_KEY(class_dir),  SUBSET_KEY(class_prompt),
      SUBSET_KEY(num_class_images), SUBSET_KEY(resolution),   SUBSET_KEY(bucketing),  SUBSET_KEY(min_bucket_resolution),
      SUBSET_KEY(max_bucket_resolution), SUBSET_KEY(bucket_step)};
  return kKeys;
}

const SubsetKeySpec* find_subset_key(const std::string& name) {
  for (const SubsetKeySpec& k : subset_schema()) {
    if (k.name == name) return &k;
  }
  return nullptr;
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
