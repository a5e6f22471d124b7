// ResnetBlock2D, Downsample2D and Upsample2D of diffusers/models/{resnet,downsampling,upsampling}.py.
#pragma once

#include "sdxl_dreambooth/nn/lora_conv.h"
#include "sdxl_dreambooth/nn/lora_linear.h"

#include <torch/torch.h>

#include <optional>
#include <vector>

namespace sdxl::nn {

struct ResnetConfig {
  std::int64_t in_channels = 0;
  std::int64_t out_channels = 0;
  std::int64_t temb_channels = 0;  // 0: no time embedding (VAE)
  std::int64_t groups = 32;
  double eps = 1e-5;
  double output_scale_factor = 1.0;
};

class ResnetBlock2DImpl : public torch::nn::Module {
 public:
  explicit ResnetBlock2DImpl(const ResnetConfig& config);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& temb = {});

  torch::nn::GroupNorm norm1{nullptr}, norm2{nullptr};
  // LoRA-capable (kohya's LoCon trains them); the registered names are diffusers'.
  LoraCompatibleConv conv1{nullptr}, conv2{nullptr}, conv_shortcut{nullptr};
  LoraCompatibleLinear time_emb_proj{nullptr};

 private:
  ResnetConfig config_;
};
TORCH_MODULE(ResnetBlock2D);

// Strided 3x3 convolution; padding 0 pads right/bottom by one first (the VAE encoder).
class Downsample2DImpl : public torch::nn::Module {
 public:
  Downsample2DImpl(std::int64_t channels, std::int64_t padding);
  torch::Tensor forward(const torch::Tensor& x);
  LoraCompatibleConv conv{nullptr};

 private:
  std::int64_t padding_;
};
TORCH_MODULE(Downsample2D);

// Nearest 2x upsampling (or to an explicit size, for latents not divisible by 8) + 3x3 conv.
class Upsample2DImpl : public torch::nn::Module {
 public:
  explicit Upsample2DImpl(std::int64_t channels);
  torch::Tensor forward(const torch::Tensor& x, const std::optional<std::vector<std::int64_t>>& size = std::nullopt);
  LoraCompatibleConv conv{nullptr};
};
TORCH_MODULE(Upsample2D);

}  // namespace sdxl::nn
