// The UNet's down, mid and up blocks (diffusers/models/unets/unet_2d_blocks.py).
// DownBlock2D and CrossAttnDownBlock2D differ only in whether `attentions` exist, so one
// class covers both (likewise for the up blocks); the registered names are diffusers'.
#pragma once

#include "sdxl_dreambooth/nn/resnet.h"
#include "sdxl_dreambooth/nn/transformer_2d.h"

#include <torch/torch.h>

#include <optional>
#include <vector>

namespace sdxl::nn {

struct BlockConfig {
  std::int64_t in_channels = 0;
  std::int64_t out_channels = 0;
  std::int64_t prev_output_channels = 0;  // up blocks
  std::int64_t temb_channels = 0;
  std::int64_t num_layers = 1;
  std::int64_t transformer_layers = 1;
  std::int64_t heads = 1;
  std::int64_t cross_attention_dim = 0;
  std::int64_t groups = 32;
  double eps = 1e-5;
  bool cross_attention = false;  // CrossAttn*Block2D
  bool add_sample = false;       // a downsampler / upsampler at the end
  std::int64_t downsample_padding = 1;
  double output_scale_factor = 1.0;
  bool use_linear_projection = true;
  bool upcast_attention = false;
};

// DownBlock2D / CrossAttnDownBlock2D: returns the hidden state and appends every
// intermediate output to `skips` for the up path.
class UNetDownBlockImpl : public torch::nn::Module {
 public:
  explicit UNetDownBlockImpl(const BlockConfig& config);
  torch::Tensor forward(torch::Tensor h, const torch::Tensor& temb, const torch::Tensor& context,
                        std::vector<torch::Tensor>& skips);
  torch::nn::ModuleList resnets, attentions{nullptr}, downsamplers{nullptr};
  // Recompute resnets and transformers in backward. Independent of train()/eval(): the loaders
  // hand out modules in eval mode, and SDXL has no active dropout for the mode to matter;
  // nn::checkpoint runs the block plainly when no gradient is recorded (sampling).
  bool gradient_checkpointing = false;
};
TORCH_MODULE(UNetDownBlock);

// UNetMidBlock2DCrossAttn: resnet, then (attention, resnet) per layer.
class UNetMidBlockCrossAttnImpl : public torch::nn::Module {
 public:
  explicit UNetMidBlockCrossAttnImpl(const BlockConfig& config);
  torch::Tensor forward(torch::Tensor h, const torch::Tensor& temb, const torch::Tensor& context);
  torch::nn::ModuleList resnets, attentions;
  bool gradient_checkpointing = false;
};
TORCH_MODULE(UNetMidBlockCrossAttn);

// UpBlock2D / CrossAttnUpBlock2D: consumes its skips from the back of `skips`.
class UNetUpBlockImpl : public torch::nn::Module {
 public:
  explicit UNetUpBlockImpl(const BlockConfig& config);
  torch::Tensor forward(torch::Tensor h, const torch::Tensor& temb, const torch::Tensor& context,
                        std::vector<torch::Tensor>& skips,
                        const std::optional<std::vector<std::int64_t>>& upsample_size);
  std::size_t num_resnets() const { return resnets->size(); }
  torch::nn::ModuleList resnets, attentions{nullptr}, upsamplers{nullptr};
  bool gradient_checkpointing = false;
};
TORCH_MODULE(UNetUpBlock);

}  // namespace sdxl::nn
