#include "sdxl_dreambooth/train/trained_adapters.h"

#include "sdxl_dreambooth/train/gradient_sync.h"
#include "sdxl_dreambooth/train/training_setup.h"
#include "sdxl_dreambooth/util/strings.h"

namespace sdxl::train {
namespace {

// The UNet's blocks per level when uniform (SDXL: 2), else 0 (no SGM names for kohya export).
int uniform_layers_per_block(const model::UNetConfig& c) {
  if (c.layers_per_block.empty()) return 0;
  for (auto n : c.layers_per_block) {
    if (n != c.layers_per_block[0]) return 0;
  }
  return static_cast<int>(c.layers_per_block[0]);
}

// Nothing when the text encoders stay frozen (they are already freed then).
template <typename Encoder>
nn::LoraNetwork inject_text_encoder(Encoder& encoder, const config::LoraConfig& lora, nn::LoraSpec spec,
                                    at::Generator& init, const char* name) {
  if (!lora.train_text_encoder) return {};
  spec.targets = lora.text_encoder_targets;
  return nn::LoraNetwork::inject(*encoder, spec, init, name);
}

std::vector<torch::Tensor> concatenated(std::initializer_list<const nn::LoraNetwork*> networks) {
  std::vector<torch::Tensor> out;
  for (const auto* n : networks) {
    for (const auto& p : n->parameters()) out.push_back(p);
  }
  return out;
}

}  // namespace

TrainedAdapters::TrainedAdapters(const config::RunConfig& cfg, pipeline::SdxlPipeline& pipe, at::Generator& init)
    : spec_(lora_spec(cfg.lora)),
      train_te_(cfg.lora.train_text_encoder),
      unet_(nn::LoraNetwork::inject(*pipe.unet, spec_, init, "UNet")),
      te_(inject_text_encoder(pipe.text_encoder, cfg.lora, spec_, init, "text_encoder")),
      te2_(inject_text_encoder(pipe.text_encoder_2, cfg.lora, spec_, init, "text_encoder_2")),
      // Taken before the optimizers flatten them (adamw.h): the same tensors either way.
      params_(concatenated({&unet_, &te_, &te2_})),
      options_(adamw_options(cfg.optimizer)),
      optimizer_(unet_.parameters(), options_),
      te_optimizer_(te_.parameters(), options_),
      te2_optimizer_(te2_.parameters(), options_),
      te_lr_ratio_(cfg.lora.text_encoder_lr / cfg.train.learning_rate) {
  models_.push_back({"unet", &unet_, &optimizer_, cfg.train.learning_rate, uniform_layers_per_block(pipe.unet->config())});
  if (train_te_) {
    models_.push_back({"text_encoder", &te_, &te_optimizer_, cfg.lora.text_encoder_lr, 0});
    models_.push_back({"text_encoder_2", &te2_, &te2_optimizer_, cfg.lora.text_encoder_lr, 0});
  }
}

std::vector<OptimizerGroup> TrainedAdapters::optimizer_groups() {
  std::vector<OptimizerGroup> groups{{&optimizer_, 1.0}};
  if (train_te_) {
    groups.push_back({&te_optimizer_, te_lr_ratio_});
    groups.push_back({&te2_optimizer_, te_lr_ratio_});
  }
  return groups;
}

std::string TrainedAdapters::describe() const {
  return "LoRA rank " + std::to_string(spec_.rank) + ", alpha " + util::format_number(spec_.alpha) + " on " +
         std::to_string(unet_.size()) + " UNet projections" +
         (train_te_ ? " and " + std::to_string(te_.size() + te2_.size()) + " text-encoder projections"
                    : std::string()) +
         ": " + std::to_string(unet_.num_parameters() + te_.num_parameters() + te2_.num_parameters()) +
         " trainable parameters";
}

void TrainedAdapters::check_weights_agree(dist::HostCollectives& comm, std::int64_t step) const {
  train::check_weights_agree(unet_, comm, step);
  if (train_te_) {
    train::check_weights_agree(te_, comm, step);
    train::check_weights_agree(te2_, comm, step);
  }
}

}  // namespace sdxl::train
