// UNet2DConditionModel as SDXL configures it (diffusers/models/unets/unet_2d_condition.py):
// sinusoidal time projection + MLP, the "text_time" added embedding (pooled text embeds and
// six size/crop time ids), down/mid/up blocks with skip connections.
#pragma once

#include "sdxl_dreambooth/model/unet_config.h"
#include "sdxl_dreambooth/nn/embeddings.h"
#include "sdxl_dreambooth/nn/unet_blocks.h"

#include <torch/torch.h>

namespace sdxl::nn {

class UNet2DConditionModelImpl : public torch::nn::Module {
 public:
  explicit UNet2DConditionModelImpl(const model::UNetConfig& config);

  // sample [B, C, H, W]; timesteps [B] (or a scalar); encoder_hidden_states [B, 77, D];
  // text_embeds [B, P] and time_ids [B, 6] for "text_time". Returns the prediction [B, C, H, W].
  torch::Tensor forward(const torch::Tensor& sample, const torch::Tensor& timesteps,
                        const torch::Tensor& encoder_hidden_states, const torch::Tensor& text_embeds = {},
                        const torch::Tensor& time_ids = {});

  const model::UNetConfig& config() const { return config_; }
  // Recompute each resnet and transformer in backward instead of keeping its activations.
  void set_gradient_checkpointing(bool enabled);
  bool gradient_checkpointing() const;
  // Holds the 4-D (convolution) weights in channels-last layout and converts the input sample
  // to it, so that activations stay NHWC through the network; the result is the same tensor
  // values (PyTorch's unet.to(memory_format=torch.channels_last)). Call after moving the module.
  void set_channels_last(bool enabled);
  // Attention::fuse_projections on every attention; after the last cast or move.
  void fuse_projections();
  // GEGLU's product and gradient as the project's CUDA kernels (nn/geglu_product) in every
  // feed-forward; no effect on the CPU or in a build without them.
  void set_fused_kernels(bool enabled);
  bool channels_last() const { return channels_last_; }

  TimestepEmbedding time_embedding{nullptr}, add_embedding{nullptr};
  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::ModuleList down_blocks, up_blocks;
  UNetMidBlockCrossAttn mid_block{nullptr};
  torch::nn::GroupNorm conv_norm_out{nullptr};

 private:
  model::UNetConfig config_;
  bool channels_last_ = false;
};
TORCH_MODULE(UNet2DConditionModel);

}  // namespace sdxl::nn
