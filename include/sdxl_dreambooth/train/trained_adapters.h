// The trained part of a run: LoRA on the UNet's attention projections (lora.*), optionally on
// both CLIP text encoders (diffusers' --train_text_encoder) or pivotal tuning's new token
// embeddings (train/pivotal_tuning.h), and the optimizer (optimizer.kind) with one parameter
// group per network, so a checkpoint maps 1:1. Everything else stays frozen.
#pragma once

#include "sdxl_dreambooth/config/run_config.h"
#include "sdxl_dreambooth/dist/host_collectives.h"
#include "sdxl_dreambooth/nn/lora_network.h"
#include "sdxl_dreambooth/pipeline/sdxl_pipeline.h"
#include "sdxl_dreambooth/train/adamw.h"
#include "sdxl_dreambooth/train/optimizer.h"
#include "sdxl_dreambooth/train/pivotal_tuning.h"
#include "sdxl_dreambooth/train/train_step.h"
#include "sdxl_dreambooth/train/training_checkpoint.h"

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sdxl::train {

class TrainedAdapters {
 public:
  // Injects the adapters, initialised from `init` (UNet first, then the text encoders).
  // `learning_rate` is the UNet's peak rate (train.learning_rate, scaled by train.scale_lr).
  // `pivotal` (may be null) trains in its own group at the text encoders' rate and decay.
  TrainedAdapters(const config::RunConfig& cfg, double learning_rate, pipeline::SdxlPipeline& pipe,
                  at::Generator& init, PivotalTuning* pivotal = nullptr);
  // The optimizers and models() point into this object.
  TrainedAdapters(const TrainedAdapters&) = delete;
  TrainedAdapters& operator=(const TrainedAdapters&) = delete;

  const nn::LoraSpec& spec() const { return spec_; }
  const nn::LoraNetwork& unet() const { return unet_; }
  bool trains_text_encoders() const { return train_te_; }
  // Pivotal tuning's embeddings, or nullptr.
  PivotalTuning* pivotal() const { return pivotal_; }
  // Every trained tensor in a fixed order (UNet, text_encoder, text_encoder_2), the same on
  // every rank; the optimizer groups' parameters, concatenated.
  const std::vector<torch::Tensor>& params() const { return params_; }
  Optimizer& optimizer() const { return *optimizer_; }
  // betas, eps and the UNet's weight decay, as checkpoints record them.
  const AdamWOptions& optimizer_options() const { return options_; }
  // Per trained model, for checkpoints and the exported LoRA.
  const std::vector<TrainedModel>& models() const { return models_; }
  // "LoRA rank 4, alpha 4 on 140 UNet projections: N trainable parameters".
  std::string describe() const;
  // Training mode (module->train()) for the trained models while `training`, evaluation mode
  // otherwise (validation): lora.dropout acts in training mode only.
  void set_training(pipeline::SdxlPipeline& pipe, bool training) const;
  // Every network's weights are the same on every rank (gradient_sync.h).
  void check_weights_agree(dist::HostCollectives& comm, std::int64_t step) const;

 private:
  nn::LoraSpec spec_;
  bool train_te_;
  nn::LoraNetwork unet_, te_, te2_;
  PivotalTuning* pivotal_;
  std::vector<torch::Tensor> params_;
  AdamWOptions options_;
  std::unique_ptr<Optimizer> optimizer_;
  std::vector<TrainedModel> models_;
};

}  // namespace sdxl::train
