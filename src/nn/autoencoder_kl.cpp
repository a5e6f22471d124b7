#include "sdxl_dreambooth/nn/autoencoder_kl.h"

#include "sdxl_dreambooth/error.h"

namespace sdxl::nn {

namespace {

constexpr double kVaeEps = 1e-6;

ResnetBlock2D vae_resnet(std::int64_t in, std::int64_t out, std::int64_t groups) {
  ResnetConfig r;
  r.in_channels = in;
  r.out_channels = out;
  r.groups = groups;
  r.eps = kVaeEps;
  return ResnetBlock2D(r);
}

torch::nn::Conv2d conv3(std::int64_t in, std::int64_t out) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).padding(1));
}

torch::nn::GroupNorm group_norm(std::int64_t groups, std::int64_t channels) {
  return torch::nn::GroupNorm(torch::nn::GroupNormOptions(groups, channels).eps(kVaeEps));
}

}  // namespace

VaeMidBlockImpl::VaeMidBlockImpl(std::int64_t channels, std::int64_t groups, bool add_attention) {
  resnets = register_module("resnets", torch::nn::ModuleList());
  resnets->push_back(vae_resnet(channels, channels, groups));
  if (add_attention) {
    attentions = register_module("attentions", torch::nn::ModuleList());
    AttentionConfig a;
    a.query_dim = channels;
    a.heads = 1;  // attention_head_dim = channels
    a.dim_head = channels;
    a.bias = true;
    a.norm_num_groups = groups;
    a.norm_eps = kVaeEps;
    a.residual_connection = true;
    a.upcast_attention = true;  // upcast_softmax
    attentions->push_back(Attention(a));
  }
  resnets->push_back(vae_resnet(channels, channels, groups));
}

torch::Tensor VaeMidBlockImpl::forward(torch::Tensor h) {
  h = resnets[0]->as<ResnetBlock2D>()->forward(h);
  if (attentions) h = attentions[0]->as<Attention>()->forward(h);
  return resnets[1]->as<ResnetBlock2D>()->forward(h);
}

VaeBlockImpl::VaeBlockImpl(std::int64_t in, std::int64_t out, std::int64_t num_layers, std::int64_t groups,
                           bool downsample, bool upsample) {
  resnets = register_module("resnets", torch::nn::ModuleList());
  for (std::int64_t i = 0; i < num_layers; ++i) resnets->push_back(vae_resnet(i == 0 ? in : out, out, groups));
  if (downsample) {
    downsamplers = register_module("downsamplers", torch::nn::ModuleList());
    downsamplers->push_back(Downsample2D(out, /*padding=*/0));
  }
  if (upsample) {
    upsamplers = register_module("upsamplers", torch::nn::ModuleList());
    upsamplers->push_back(Upsample2D(out));
  }
}

torch::Tensor VaeBlockImpl::forward(torch::Tensor h) {
  for (const auto& r : *resnets) h = r->as<ResnetBlock2D>()->forward(h);
  if (downsamplers) h = downsamplers[0]->as<Downsample2D>()->forward(h);
  if (upsamplers) h = upsamplers[0]->as<Upsample2D>()->forward(h);
  return h;
}

VaeEncoderImpl::VaeEncoderImpl(const model::VaeConfig& c) {
  const auto& ch = c.block_out_channels;
  conv_in = register_module("conv_in", conv3(c.in_channels, ch[0]));
  down_blocks = register_module("down_blocks", torch::nn::ModuleList());
  std::int64_t output = ch[0];
  for (std::size_t i = 0; i < ch.size(); ++i) {
    const std::int64_t input = output;
    output = ch[i];
    down_blocks->push_back(VaeBlock(input, output, c.layers_per_block, c.norm_num_groups, i + 1 < ch.size(), false));
  }
  mid_block = register_module("mid_block", VaeMidBlock(ch.back(), c.norm_num_groups, c.mid_block_add_attention));
  conv_norm_out = register_module("conv_norm_out", group_norm(c.norm_num_groups, ch.back()));
  conv_out = register_module("conv_out", conv3(ch.back(), 2 * c.latent_channels));
}

torch::Tensor VaeEncoderImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = conv_in(x);
  for (const auto& b : *down_blocks) h = b->as<VaeBlock>()->forward(h);
  h = mid_block(h);
  return conv_out(torch::silu(conv_norm_out(h)));
}

VaeDecoderImpl::VaeDecoderImpl(const model::VaeConfig& c) {
  const auto& ch = c.block_out_channels;
  conv_in = register_module("conv_in", conv3(c.latent_channels, ch.back()));
  mid_block = register_module("mid_block", VaeMidBlock(ch.back(), c.norm_num_groups, c.mid_block_add_attention));
  up_blocks = register_module("up_blocks", torch::nn::ModuleList());
  std::vector<std::int64_t> rev(ch.rbegin(), ch.rend());
  std::int64_t output = rev[0];
  for (std::size_t i = 0; i < rev.size(); ++i) {
    const std::int64_t prev = output;
    output = rev[i];
    up_blocks->push_back(VaeBlock(prev, output, c.layers_per_block + 1, c.norm_num_groups, false, i + 1 < rev.size()));
  }
  conv_norm_out = register_module("conv_norm_out", group_norm(c.norm_num_groups, ch[0]));
  conv_out = register_module("conv_out", conv3(ch[0], c.out_channels));
}

torch::Tensor VaeDecoderImpl::forward(const torch::Tensor& z) {
  torch::Tensor h = mid_block(conv_in(z));
  for (const auto& b : *up_blocks) h = b->as<VaeBlock>()->forward(h);
  return conv_out(torch::silu(conv_norm_out(h)));
}

AutoencoderKLImpl::AutoencoderKLImpl(const model::VaeConfig& c) : config_(c) {
  encoder = register_module("encoder", VaeEncoder(c));
  decoder = register_module("decoder", VaeDecoder(c));
  if (c.use_quant_conv) {
    quant_conv = register_module("quant_conv",
                                 torch::nn::Conv2d(torch::nn::Conv2dOptions(2 * c.latent_channels, 2 * c.latent_channels, 1)));
  }
  if (c.use_post_quant_conv) {
    post_quant_conv = register_module(
        "post_quant_conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(c.latent_channels, c.latent_channels, 1)));
  }
}

LatentDistribution AutoencoderKLImpl::encode(const torch::Tensor& image) {
  if (!encoder) throw Error("internal: the VAE encoder was released before an encode");
  torch::Tensor moments = encoder(image);
  if (quant_conv) moments = quant_conv(moments);
  auto parts = moments.chunk(2, 1);
  LatentDistribution d;
  d.mean = parts[0];
  d.logvar = torch::clamp(parts[1], -30.0, 20.0);
  d.std = torch::exp(0.5 * d.logvar);
  return d;
}

void AutoencoderKLImpl::release_encoder() {
  if (!encoder) return;
  unregister_module("encoder");
  encoder = nullptr;
  if (quant_conv) {
    unregister_module("quant_conv");
    quant_conv = nullptr;
  }
}

bool AutoencoderKLImpl::needs_upcast() const {
  return config_.force_upcast && decoder->conv_in->weight.scalar_type() == torch::kHalf;
}

torch::Tensor AutoencoderKLImpl::decode(const torch::Tensor& latents) {
  if (needs_upcast()) {
    // ref: StableDiffusionXLPipeline.upcast_vae: the VAE runs in float32 for the decode and
    // goes back to float16 afterwards (it stays small next to the UNet).
    this->to(torch::kFloat);
    torch::Tensor image;
    try {
      torch::Tensor z = latents.to(torch::kFloat);
      image = decoder(post_quant_conv ? post_quant_conv(z) : z);
    } catch (...) {
      this->to(torch::kHalf);
      throw;
    }
    this->to(torch::kHalf);
    return image;
  }
  torch::Tensor z = post_quant_conv ? post_quant_conv(latents) : latents;
  return decoder(z);
}

}  // namespace sdxl::nn
