// The trained part of a run: LoRA on the UNet's attention projections (lora.*), optionally on
// both CLIP text encoders (diffusers' --train_text_encoder), and one AdamW per network so a
// checkpoint maps 1:1. Everything else stays frozen.
#pragma once

#include "sdxl_dreambooth/config/run_config.h"
#include "sdxl_dreambooth/dist/host_collectives.h"
#include "sdxl_dreambooth/nn/lora_network.h"
#include "sdxl_dreambooth/pipeline/sdxl_pipeline.h"
#include "sdxl_dreambooth/train/adamw.h"
#include "sdxl_dreambooth/train/train_step.h"
#include "sdxl_dreambooth/train/training_checkpoint.h"

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace sdxl::train {

class TrainedAdapters {
 public:
  // Injects the adapters, initialised from `init` (UNet first, then the text encoders).
  TrainedAdapters(const config::RunConfig& cfg, pipeline::SdxlPipeline& pipe, at::Generator& init);
  // The optimizers and models() point into this object.
  TrainedAdapters(const TrainedAdapters&) = delete;
  TrainedAdapters& operator=(const TrainedAdapters&) = delete;

  const nn::LoraSpec& spec() const { return spec_; }
  const nn::LoraNetwork& unet() const { return unet_; }
  bool trains_text_encoders() const { return train_te_; }
  // Every trained tensor in a fixed order (UNet, text_encoder, text_encoder_2), the same on
  // every rank; the optimizer groups' parameters, concatenated.
  const std::vector<torch::Tensor>& params() const { return params_; }
  std::vector<OptimizerGroup> optimizer_groups();
  const AdamWOptions& optimizer_options() const { return options_; }
  // Per trained model, for checkpoints and the exported LoRA.
  const std::vector<TrainedModel>& models() const { return models_; }
  // "LoRA rank 4, alpha 4 on 140 UNet projections: N trainable parameters".
  std::string describe() const;
  // Every network's weights are the same on every rank (gradient_sync.h).
  void check_weights_agree(dist::HostCollectives& comm, std::int64_t step) const;

 private:
  nn::LoraSpec spec_;
  bool train_te_;
  nn::LoraNetwork unet_, te_, te2_;
  std::vector<torch::Tensor> params_;
  AdamWOptions options_;
  AdamW optimizer_, te_optimizer_, te2_optimizer_;
  double te_lr_ratio_;
  std::vector<TrainedModel> models_;
};

}  // namespace sdxl::train
