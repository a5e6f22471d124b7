#include "sdxl_dreambooth/train/lora_outputs.h"

#include "sdxl_dreambooth/build_features.h"
#include "sdxl_dreambooth/config/data_subsets.h"
#include "sdxl_dreambooth/model/lora_export.h"
#include "sdxl_dreambooth/train/training_data.h"
#include "sdxl_dreambooth/util/json_text.h"
#include "sdxl_dreambooth/util/strings.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>

namespace fs = std::filesystem;

namespace sdxl::train {
namespace {

using Metadata = std::map<std::string, std::string>;

// What both files say: the adapter, the base model, the run and the program. Nothing that
// differs between two runs of the same config (folder, time), so that they write the same
// bytes (the kohya file adds its names and times).
Metadata common_metadata(const TrainedAdapters& adapters, const config::RunConfig& cfg, const RunSettings& s,
                         const RunFacts& facts) {
  const BuildFeatures f = build_features();
  return {{"rank", std::to_string(adapters.spec().rank)},
          {"alpha", util::format_number(adapters.spec().alpha)},
          {"base_model", cfg.model.pretrained},
          {"resolution", std::to_string(s.resolution)},
          {"steps", std::to_string(facts.steps)},
          {"seed", std::to_string(s.seed)},
          {"instance_prompt", trigger_words(cfg.data)},
          {"software", "sdxl-dreambooth " + f.program_version + " (" + f.git_commit + ")"}};
}

std::string number(double v) { return util::format_number(v); }
std::string flag(bool b) { return b ? "True" : "False"; }  // as Python's str(bool) writes them

// kohya's ss_optimizer: the class and its arguments.
std::string optimizer_text(const config::OptimizerConfig& o) {
  const std::string betas = "betas=(" + number(o.beta1) + ", " + number(o.beta2) + ")";
  if (o.kind != "prodigy") return "torch.optim.AdamW(weight_decay=" + number(o.weight_decay) + "," + betas + ")";
  return "prodigyopt.prodigy.Prodigy(weight_decay=" + number(o.weight_decay) + "," + betas +
         ",decouple=" + flag(o.prodigy_decouple) + ",use_bias_correction=" + flag(o.prodigy_use_bias_correction) +
         ",safeguard_warmup=" + flag(o.prodigy_safeguard_warmup) + ",d0=" + number(o.prodigy_d0) +
         ",d_coef=" + number(o.prodigy_d_coef) + ")";
}

// kohya's sd-scripts (train_network.py) metadata, so that A1111 lists the file under SDXL and
// shows how it was trained.
Metadata kohya_metadata(const config::RunConfig& cfg, const RunSettings& s, const RunFacts& facts) {
  const std::string res = "(" + std::to_string(s.resolution) + ", " + std::to_string(s.resolution) + ")";
  // kohya's per-folder table: each subset's folder with its repeats and images.
  nlohmann::json dirs = nlohmann::json::object();
  const auto subsets = config::resolve_subsets(cfg.data);
  for (std::size_t k = 0; k < subsets.size(); ++k) {
    // "photos/" names "photos" too.
    const fs::path dir = fs::path(subsets[k].instance_dir).lexically_normal();
    const std::string name = (dir.has_filename() ? dir : dir.parent_path()).filename().string();
    dirs[name] = {
        {"n_repeats", subsets[k].repeats},
        {"img_count", k < facts.subset_images.size() ? facts.subset_images[k] : facts.instance_images}};
  }
  // kohya's bucket_info: {"buckets": {"0": {"resolution": [w, h], "count": n}, ...}}.
  nlohmann::json buckets = nlohmann::json::object();
  for (std::size_t k = 0; k < facts.buckets.size(); ++k) {
    buckets[std::to_string(k)] = {{"resolution", facts.buckets[k].first}, {"count", facts.buckets[k].second}};
  }
  const std::vector<data::BucketSize> sizes = training_buckets(cfg.data, s.resolution);
  return {{"ss_output_name", run_name(cfg.output)},
          {"ss_enable_bucket", flag(cfg.data.bucketing)},
          {"ss_bucket_no_upscale", flag(false)},
          {"ss_min_bucket_reso", std::to_string(sizes.front().width)},
          {"ss_max_bucket_reso", std::to_string(sizes.back().width)},
          {"ss_bucket_info", util::json_text(nlohmann::json{{"buckets", buckets}})},
          {"ss_sd_model_name", cfg.model.pretrained},
          {"ss_resolution", res},
          {"ss_steps", std::to_string(facts.steps)},
          {"ss_max_train_steps", std::to_string(facts.steps)},
          {"ss_epoch", std::to_string(facts.epoch)},
          {"ss_num_batches_per_epoch", std::to_string(facts.batches_per_epoch)},
          {"ss_num_train_images", std::to_string(facts.train_examples)},
          {"ss_num_reg_images", std::to_string(facts.class_images)},
          {"ss_dataset_dirs", util::json_text(dirs)},
          {"ss_learning_rate", number(facts.learning_rate)},
          {"ss_unet_lr", number(facts.learning_rate)},
          {"ss_text_encoder_lr", cfg.lora.train_text_encoder ? number(cfg.lora.text_encoder_lr) : "0"},
          {"ss_network_train_unet_only", flag(!cfg.lora.train_text_encoder)},
          {"ss_lr_scheduler", cfg.train.lr_scheduler},
          {"ss_lr_warmup_steps", std::to_string(cfg.train.lr_warmup_steps)},
          {"ss_gradient_accumulation_steps", std::to_string(cfg.train.grad_accum)},
          {"ss_gradient_checkpointing", flag(cfg.train.gradient_checkpointing)},
          {"ss_mixed_precision", cfg.train.mixed_precision},
          {"ss_seed", std::to_string(s.seed)},
          {"ss_noise_offset", number(cfg.train.noise_offset)},
          {"ss_min_snr_gamma", cfg.train.snr_gamma ? number(*cfg.train.snr_gamma) : "None"},
          {"ss_max_grad_norm", number(cfg.train.max_grad_norm)},
          {"ss_optimizer", optimizer_text(cfg.optimizer)},
          {"ss_training_started_at", std::to_string(facts.started_at)},
          {"ss_training_finished_at", std::to_string(std::time(nullptr))},
          {"ss_training_comment", "trained with sdxl-dreambooth (DreamBooth LoRA, diffusers 0.27 recipe)"}};
}

}  // namespace

std::string run_name(const config::OutputConfig& output) {
  if (output.name) return *output.name;
  fs::path dir = fs::path(output.dir).lexically_normal();
  if (dir.filename().empty()) dir = dir.parent_path();
  const std::string name = dir.filename().string();
  if (name.empty() || name == "." || name == "..") return "lora";
  // A folder named like the diffusers file must not make the kohya file overwrite it.
  return name == "pytorch_lora_weights" ? name + "_kohya" : name;
}

LoraFiles write_lora_outputs(const TrainedAdapters& adapters, const config::RunConfig& cfg, const RunSettings& s,
                             const RunFacts& facts, const Logger& log) {
  LoraFiles files;
  std::vector<model::ModelLoraWeights> weights;
  for (const auto& m : adapters.models()) {
    if (m.network) weights.push_back(model::lora_weights(*m.network, m.model, m.layers_per_block));
  }
  const Metadata common = common_metadata(adapters, cfg, s, facts);
  files.diffusers = (s.output / "pytorch_lora_weights.safetensors").string();
  model::write_lora_file(files.diffusers, weights, model::LoraFormat::kDiffusers, common);
  log.info("wrote " + files.diffusers + " (diffusers)");
  if (const PivotalTuning* pivotal = adapters.pivotal()) {
    // ref: the advanced script's <output_dir name>_emb.safetensors; the LoRA needs it.
    files.embeddings = (s.output / (run_name(cfg.output) + "_emb.safetensors")).string();
    model::write_token_embeddings(*files.embeddings, pivotal->embeddings(), common);
    log.info("wrote " + *files.embeddings + " (pivotal tuning's embeddings: " + pivotal->abstractions().describe() +
             "; load them with the LoRA)");
  }
  if (!cfg.output.kohya) return files;
  if (weights.front().layers_per_block <= 0) {
    log.warn("no kohya LoRA file: this UNet's levels have different numbers of blocks, so its modules have no "
             "SGM (kohya) names; use " + files.diffusers);
    return files;
  }
  Metadata kohya = common;
  for (auto& [k, v] : kohya_metadata(cfg, s, facts)) kohya[k] = v;
  files.kohya = (s.output / (run_name(cfg.output) + ".safetensors")).string();
  model::write_lora_file(*files.kohya, weights, model::LoraFormat::kKohya, kohya);
  log.info("wrote " + *files.kohya + " (kohya names: ComfyUI, AUTOMATIC1111)");
  return files;
}

}  // namespace sdxl::train
