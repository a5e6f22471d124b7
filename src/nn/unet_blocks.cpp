#include "sdxl_dreambooth/nn/unet_blocks.h"

#include "sdxl_dreambooth/nn/checkpoint.h"

namespace sdxl::nn {

namespace {

ResnetConfig resnet_config(const BlockConfig& c, std::int64_t in, std::int64_t out) {
  ResnetConfig r;
  r.in_channels = in;
  r.out_channels = out;
  r.temb_channels = c.temb_channels;
  r.groups = c.groups;
  r.eps = c.eps;
  r.output_scale_factor = c.output_scale_factor;
  return r;
}

Transformer2DModel transformer(const BlockConfig& c, std::int64_t channels) {
  Transformer2DConfig t;
  t.in_channels = channels;
  t.heads = c.heads;
  t.dim_head = channels / c.heads;
  t.num_layers = c.transformer_layers;
  t.cross_attention_dim = c.cross_attention_dim;
  t.norm_num_groups = c.groups;
  t.use_linear_projection = c.use_linear_projection;
  t.upcast_attention = c.upcast_attention;
  return Transformer2DModel(t);
}

// One resnet / transformer step, checkpointed when asked (diffusers checkpoints at the
// same granularity: each resnet and each Transformer2DModel).
torch::Tensor run_resnet(torch::nn::ModuleList list, std::size_t i, const torch::Tensor& h,
                         const torch::Tensor& temb, bool ckpt) {
  auto resnet = list[i]->as<ResnetBlock2D>();
  if (!ckpt) return resnet->forward(h, temb);
  return checkpoint([resnet](const std::vector<torch::Tensor>& in) { return resnet->forward(in[0], in[1]); },
                    {h, temb}, trainable_parameters(*resnet));
}

torch::Tensor run_transformer(torch::nn::ModuleList list, std::size_t i, const torch::Tensor& h,
                              const torch::Tensor& context, bool ckpt) {
  auto t = list[i]->as<Transformer2DModel>();
  if (!ckpt) return t->forward(h, context);
  return checkpoint([t](const std::vector<torch::Tensor>& in) { return t->forward(in[0], in[1]); }, {h, context},
                    trainable_parameters(*t));
}

}  // namespace

UNetDownBlockImpl::UNetDownBlockImpl(const BlockConfig& c) {
  resnets = register_module("resnets", torch::nn::ModuleList());
  if (c.cross_attention) attentions = register_module("attentions", torch::nn::ModuleList());
  for (std::int64_t i = 0; i < c.num_layers; ++i) {
    resnets->push_back(ResnetBlock2D(resnet_config(c, i == 0 ? c.in_channels : c.out_channels, c.out_channels)));
    if (c.cross_attention) attentions->push_back(transformer(c, c.out_channels));
  }
  if (c.add_sample) {
    downsamplers = register_module("downsamplers", torch::nn::ModuleList());
    downsamplers->push_back(Downsample2D(c.out_channels, c.downsample_padding));
  }
}

torch::Tensor UNetDownBlockImpl::forward(torch::Tensor h, const torch::Tensor& temb, const torch::Tensor& context,
                                         std::vector<torch::Tensor>& skips) {
  const bool ckpt = gradient_checkpointing;
  for (std::size_t i = 0; i < resnets->size(); ++i) {
    h = run_resnet(resnets, i, h, temb, ckpt);
    if (attentions) h = run_transformer(attentions, i, h, context, ckpt);
    skips.push_back(h);
  }
  if (downsamplers) {
    h = downsamplers[0]->as<Downsample2D>()->forward(h);
    skips.push_back(h);
  }
  return h;
}

UNetMidBlockCrossAttnImpl::UNetMidBlockCrossAttnImpl(const BlockConfig& c) {
  resnets = register_module("resnets", torch::nn::ModuleList());
  attentions = register_module("attentions", torch::nn::ModuleList());
  resnets->push_back(ResnetBlock2D(resnet_config(c, c.in_channels, c.in_channels)));
  for (std::int64_t i = 0; i < c.num_layers; ++i) {
    attentions->push_back(transformer(c, c.in_channels));
    resnets->push_back(ResnetBlock2D(resnet_config(c, c.in_channels, c.in_channels)));
  }
}

torch::Tensor UNetMidBlockCrossAttnImpl::forward(torch::Tensor h, const torch::Tensor& temb,
                                                 const torch::Tensor& context) {
  const bool ckpt = gradient_checkpointing;
  h = run_resnet(resnets, 0, h, temb, ckpt);
  for (std::size_t i = 0; i < attentions->size(); ++i) {
    h = run_transformer(attentions, i, h, context, ckpt);
    h = run_resnet(resnets, i + 1, h, temb, ckpt);
  }
  return h;
}

UNetUpBlockImpl::UNetUpBlockImpl(const BlockConfig& c) {
  resnets = register_module("resnets", torch::nn::ModuleList());
  if (c.cross_attention) attentions = register_module("attentions", torch::nn::ModuleList());
  for (std::int64_t i = 0; i < c.num_layers; ++i) {
    // ref: CrossAttnUpBlock2D: the last resnet takes the block's input-channel skip.
    const std::int64_t skip = i == c.num_layers - 1 ? c.in_channels : c.out_channels;
    const std::int64_t in = i == 0 ? c.prev_output_channels : c.out_channels;
    resnets->push_back(ResnetBlock2D(resnet_config(c, in + skip, c.out_channels)));
    if (c.cross_attention) attentions->push_back(transformer(c, c.out_channels));
  }
  if (c.add_sample) {
    upsamplers = register_module("upsamplers", torch::nn::ModuleList());
    upsamplers->push_back(Upsample2D(c.out_channels));
  }
}

torch::Tensor UNetUpBlockImpl::forward(torch::Tensor h, const torch::Tensor& temb, const torch::Tensor& context,
                                       std::vector<torch::Tensor>& skips,
                                       const std::optional<std::vector<std::int64_t>>& upsample_size) {
  const bool ckpt = gradient_checkpointing;
  for (std::size_t i = 0; i < resnets->size(); ++i) {
    h = torch::cat({h, skips.back()}, 1);
    skips.pop_back();
    h = run_resnet(resnets, i, h, temb, ckpt);
    if (attentions) h = run_transformer(attentions, i, h, context, ckpt);
  }
  if (upsamplers) h = upsamplers[0]->as<Upsample2D>()->forward(h, upsample_size);
  return h;
}

}  // namespace sdxl::nn
