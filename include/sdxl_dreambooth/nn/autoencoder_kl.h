// AutoencoderKL (diffusers/models/autoencoders/{autoencoder_kl,vae}.py): Encoder, Decoder,
// quant_conv/post_quant_conv and the diagonal Gaussian posterior.
#pragma once

#include "sdxl_dreambooth/model/vae_config.h"
#include "sdxl_dreambooth/nn/attention.h"
#include "sdxl_dreambooth/nn/resnet.h"

#include <torch/torch.h>

namespace sdxl::nn {

// UNetMidBlock2D without time embedding: resnet, attention, resnet.
class VaeMidBlockImpl : public torch::nn::Module {
 public:
  VaeMidBlockImpl(std::int64_t channels, std::int64_t groups, bool add_attention);
  torch::Tensor forward(torch::Tensor h);
  torch::nn::ModuleList resnets, attentions{nullptr};
};
TORCH_MODULE(VaeMidBlock);

// DownEncoderBlock2D / UpDecoderBlock2D: resnets, then an optional down/upsampler.
class VaeBlockImpl : public torch::nn::Module {
 public:
  VaeBlockImpl(std::int64_t in_channels, std::int64_t out_channels, std::int64_t num_layers, std::int64_t groups,
               bool downsample, bool upsample);
  torch::Tensor forward(torch::Tensor h);
  torch::nn::ModuleList resnets, downsamplers{nullptr}, upsamplers{nullptr};
};
TORCH_MODULE(VaeBlock);

class VaeEncoderImpl : public torch::nn::Module {
 public:
  explicit VaeEncoderImpl(const model::VaeConfig& c);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::ModuleList down_blocks;
  VaeMidBlock mid_block{nullptr};
  torch::nn::GroupNorm conv_norm_out{nullptr};
};
TORCH_MODULE(VaeEncoder);

class VaeDecoderImpl : public torch::nn::Module {
 public:
  explicit VaeDecoderImpl(const model::VaeConfig& c);
  torch::Tensor forward(const torch::Tensor& z);
  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::ModuleList up_blocks;
  VaeMidBlock mid_block{nullptr};
  torch::nn::GroupNorm conv_norm_out{nullptr};
};
TORCH_MODULE(VaeDecoder);

// The encoder's diagonal Gaussian posterior; logvar clamped to [-30, 20] as diffusers does.
struct LatentDistribution {
  torch::Tensor mean, logvar, std;
  // mean + std * noise (noise ~ N(0, 1) of mean's shape, drawn by the caller's generator).
  torch::Tensor sample(const torch::Tensor& noise) const { return mean + std * noise; }
};

class AutoencoderKLImpl : public torch::nn::Module {
 public:
  explicit AutoencoderKLImpl(const model::VaeConfig& config);
  // image in [-1, 1], [B, 3, H, W] -> posterior over [B, latent, H/8, W/8].
  LatentDistribution encode(const torch::Tensor& image);
  // latents (unscaled: divide by scaling_factor first) -> image in about [-1, 1]. With
  // force_upcast and float16 weights (SDXL's VAE overflows in fp16) the decode runs in
  // float32, as diffusers' pipeline does, and returns float32.
  torch::Tensor decode(const torch::Tensor& latents);
  bool needs_upcast() const;
  const model::VaeConfig& config() const { return config_; }
  // Frees the encoder (training encodes every image once, then only decodes samples).
  void release_encoder();

  VaeEncoder encoder{nullptr};
  VaeDecoder decoder{nullptr};
  torch::nn::Conv2d quant_conv{nullptr}, post_quant_conv{nullptr};

 private:
  model::VaeConfig config_;
};
TORCH_MODULE(AutoencoderKL);

}  // namespace sdxl::nn
