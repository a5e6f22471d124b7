#include "sdxl_dreambooth/nn/resnet.h"

#include "sdxl_dreambooth/torch_compat.h"

namespace sdxl::nn {

namespace F = torch::nn::functional;

ResnetBlock2DImpl::ResnetBlock2DImpl(const ResnetConfig& c) : config_(c) {
  const std::int64_t out = c.out_channels > 0 ? c.out_channels : c.in_channels;
  config_.out_channels = out;
  norm1 = register_module("norm1", torch::nn::GroupNorm(torch::nn::GroupNormOptions(c.groups, c.in_channels).eps(c.eps)));
  conv1 = register_module("conv1", LoraCompatibleConv(ConvShape{c.in_channels, out, 3, 1, 1}));
  if (c.temb_channels > 0) time_emb_proj = register_module("time_emb_proj", LoraCompatibleLinear(c.temb_channels, out));
  norm2 = register_module("norm2", torch::nn::GroupNorm(torch::nn::GroupNormOptions(c.groups, out).eps(c.eps)));
  conv2 = register_module("conv2", LoraCompatibleConv(ConvShape{out, out, 3, 1, 1}));
  if (c.in_channels != out) {
    conv_shortcut = register_module("conv_shortcut", LoraCompatibleConv(ConvShape{c.in_channels, out, 1, 1, 0}));
  }
}

torch::Tensor ResnetBlock2DImpl::forward(const torch::Tensor& x, const torch::Tensor& temb) {
  torch::Tensor h = conv1(torch::silu(norm1(x)));
  if (time_emb_proj && temb.defined()) {
    h = h + time_emb_proj(torch::silu(temb)).unsqueeze(-1).unsqueeze(-1);
  }
  h = conv2(torch::silu(norm2(h)));
  torch::Tensor shortcut = conv_shortcut ? conv_shortcut(x) : x;
  torch::Tensor out = shortcut + h;
  if (config_.output_scale_factor != 1.0) out = out / config_.output_scale_factor;
  return out;
}

Downsample2DImpl::Downsample2DImpl(std::int64_t channels, std::int64_t padding) : padding_(padding) {
  conv = register_module("conv", LoraCompatibleConv(ConvShape{channels, channels, 3, 2, padding}));
}

torch::Tensor Downsample2DImpl::forward(const torch::Tensor& x) {
  if (padding_ == 0) return conv(F::pad(x, F::PadFuncOptions({0, 1, 0, 1}).mode(torch::kConstant).value(0)));
  return conv(x);
}

Upsample2DImpl::Upsample2DImpl(std::int64_t channels) {
  conv = register_module("conv", LoraCompatibleConv(ConvShape{channels, channels, 3, 1, 1}));
}

torch::Tensor Upsample2DImpl::forward(const torch::Tensor& x, const std::optional<std::vector<std::int64_t>>& size) {
  // Nearest upsampling has no bfloat16 kernel in older LibTorch: upcast like diffusers does.
  // It copies values, so both ways give the same bits; the casts were two passes over the
  // largest activations of the up blocks.
  const auto dtype = x.scalar_type();
  const bool upcast = dtype == torch::kBFloat16 && !compat::kHasBf16NearestUpsample;
  torch::Tensor h = upcast ? x.to(torch::kFloat) : x;
  auto opts = F::InterpolateFuncOptions().mode(torch::kNearest);
  if (size) {
    opts.size(*size);
  } else {
    opts.scale_factor(std::vector<double>{2.0, 2.0});
  }
  h = F::interpolate(h.contiguous(h.suggest_memory_format()), opts);
  if (upcast) h = h.to(dtype);
  return conv(h);
}

}  // namespace sdxl::nn
