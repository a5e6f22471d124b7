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
  spec.blocks.clear();  // lora.blocks names UNet blocks
  return nn::LoraNetwork::inject(*encoder, spec, init, name);
}

std::vector<torch::Tensor> concatenated(std::initializer_list<const nn::LoraNetwork*> networks,
                                        const PivotalTuning* pivotal) {
  std::vector<torch::Tensor> out;
  for (const auto* n : networks) {
    for (const auto& p : n->parameters()) out.push_back(p);
  }
  if (pivotal) {
    for (const auto& p : pivotal->parameters()) out.push_back(p);
  }
  return out;
}

}  // namespace

TrainedAdapters::TrainedAdapters(const config::RunConfig& cfg, double learning_rate, pipeline::SdxlPipeline& pipe,
                                 at::Generator& init, PivotalTuning* pivotal)
    : spec_(lora_spec(cfg.lora)),
      train_te_(cfg.lora.train_text_encoder),
      unet_(nn::LoraNetwork::inject(*pipe.unet, spec_, init, "UNet")),
      te_(inject_text_encoder(pipe.text_encoder, cfg.lora, spec_, init, "text_encoder")),
      te2_(inject_text_encoder(pipe.text_encoder_2, cfg.lora, spec_, init, "text_encoder_2")),
      pivotal_(pivotal),
      // Taken before the optimizer flattens them (flat_parameters.h): the same tensors either way.
      params_(concatenated({&unet_, &te_, &te2_}, pivotal)),
      options_(adamw_options(cfg.optimizer)) {
  std::vector<ParamGroup> groups{{unet_.parameters(), 1.0, cfg.optimizer.weight_decay}};
  models_.push_back({"unet", &unet_, nullptr, 0, learning_rate, uniform_layers_per_block(pipe.unet->config())});
  if (train_te_) {
    const double te_scale = cfg.lora.text_encoder_lr / learning_rate;
    for (const auto* net : {&te_, &te2_}) {
      groups.push_back({net->parameters(), te_scale, cfg.optimizer.text_encoder_weight_decay});
      models_.push_back({net == &te_ ? "text_encoder" : "text_encoder_2", net, nullptr, models_.size(),
                         cfg.lora.text_encoder_lr, 0});
    }
  }
  if (pivotal_) {
    // ref: the advanced script puts the embeddings in the text encoders' groups (text_encoder_lr,
    // their weight decay); one group for both encoders steps them the same way.
    groups.push_back({pivotal_->parameters(), cfg.lora.text_encoder_lr / learning_rate,
                      cfg.optimizer.text_encoder_weight_decay});
    TrainedModel m{"embeddings", nullptr, nullptr, models_.size(), cfg.lora.text_encoder_lr, 0};
    m.tokens = pivotal_;
    models_.push_back(m);
  }
  optimizer_ = make_optimizer(cfg.optimizer, std::move(groups));
  for (auto& m : models_) m.optimizer = optimizer_.get();
}

std::string TrainedAdapters::describe() const {
  const std::string conv = unet_.conv_modules().empty()
                               ? std::string()
                               : " (3x3 convolutions: rank " + std::to_string(spec_.conv_rank) + ", alpha " +
                                     util::format_number(spec_.conv_alpha) + ")";
  return std::string(spec_.dora ? "DoRA" : "LoRA") + " rank " + std::to_string(spec_.rank) + ", alpha " +
         util::format_number(spec_.alpha) + conv + " on " +
         std::to_string(unet_.modules().size()) + " UNet projections" +
         (unet_.conv_modules().empty() ? std::string()
                                       : " and " + std::to_string(unet_.conv_modules().size()) + " convolutions") +
         (train_te_ ? " and " + std::to_string(te_.size() + te2_.size()) + " text-encoder projections"
                    : std::string()) +
         (pivotal_ ? ", pivotal tuning of " + pivotal_->abstractions().describe() : std::string()) + ": " +
         std::to_string(unet_.num_parameters() + te_.num_parameters() + te2_.num_parameters() +
                        (pivotal_ ? pivotal_->num_parameters() : 0)) +
         " trainable parameters";
}

void TrainedAdapters::set_training(pipeline::SdxlPipeline& pipe, bool training) const {
  pipe.unet->train(training);
  if (train_te_) {
    pipe.text_encoder->train(training);
    pipe.text_encoder_2->train(training);
  }
}

void TrainedAdapters::check_weights_agree(dist::HostCollectives& comm, std::int64_t step) const {
  train::check_weights_agree(params_, comm, step);
}

}  // namespace sdxl::train
