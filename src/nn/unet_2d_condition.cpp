#include "sdxl_dreambooth/nn/unet_2d_condition.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/nn/attention.h"

namespace sdxl::nn {

UNet2DConditionModelImpl::UNet2DConditionModelImpl(const model::UNetConfig& c) : config_(c) {
  const std::size_t n = c.block_out_channels.size();
  const std::int64_t temb = c.time_embed_dim();
  const std::int64_t ch0 = c.block_out_channels[0];
  conv_in = register_module("conv_in", torch::nn::Conv2d(torch::nn::Conv2dOptions(c.in_channels, ch0, c.conv_in_kernel)
                                                             .padding((c.conv_in_kernel - 1) / 2)));
  time_embedding = register_module("time_embedding", TimestepEmbedding(ch0, temb));
  if (c.addition_embed_type == "text_time") {
    add_embedding = register_module("add_embedding", TimestepEmbedding(c.projection_class_embeddings_input_dim, temb));
  }
  auto base = [&](std::size_t i) {
    BlockConfig b;
    b.temb_channels = temb;
    b.groups = c.norm_num_groups;
    b.eps = c.norm_eps;
    b.use_linear_projection = c.use_linear_projection;
    b.upcast_attention = c.upcast_attention;
    b.heads = c.num_attention_heads[i];
    b.cross_attention_dim = c.cross_attention_dim[i];
    b.transformer_layers = c.transformer_layers_per_block[i];
    return b;
  };
  down_blocks = register_module("down_blocks", torch::nn::ModuleList());
  std::int64_t output = ch0;
  for (std::size_t i = 0; i < n; ++i) {
    BlockConfig b = base(i);
    b.in_channels = output;
    output = c.block_out_channels[i];
    b.out_channels = output;
    b.num_layers = c.layers_per_block[i];
    b.cross_attention = c.down_block_types[i] == "CrossAttnDownBlock2D";
    b.add_sample = i + 1 < n;
    b.downsample_padding = c.downsample_padding;
    down_blocks->push_back(UNetDownBlock(b));
  }
  BlockConfig mid = base(n - 1);
  mid.in_channels = c.block_out_channels[n - 1];
  mid.num_layers = 1;
  mid.output_scale_factor = c.mid_block_scale_factor;
  mid_block = register_module("mid_block", UNetMidBlockCrossAttn(mid));

  up_blocks = register_module("up_blocks", torch::nn::ModuleList());
  std::vector<std::int64_t> rev(c.block_out_channels.rbegin(), c.block_out_channels.rend());
  output = rev[0];
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t down_index = n - 1 - i;  // the mirrored down block's settings
    BlockConfig b = base(down_index);
    b.transformer_layers = c.reverse_transformer_layers_per_block[i];
    b.prev_output_channels = output;
    output = rev[i];
    b.out_channels = output;
    b.in_channels = rev[std::min(i + 1, n - 1)];
    b.num_layers = c.layers_per_block[down_index] + 1;
    b.cross_attention = c.up_block_types[i] == "CrossAttnUpBlock2D";
    b.add_sample = i + 1 < n;
    up_blocks->push_back(UNetUpBlock(b));
  }
  conv_norm_out = register_module(
      "conv_norm_out", torch::nn::GroupNorm(torch::nn::GroupNormOptions(c.norm_num_groups, ch0).eps(c.norm_eps)));
  conv_out = register_module("conv_out", torch::nn::Conv2d(torch::nn::Conv2dOptions(ch0, c.out_channels, c.conv_out_kernel)
                                                               .padding((c.conv_out_kernel - 1) / 2)));
}

void UNet2DConditionModelImpl::set_channels_last(bool enabled) {
  const auto format = enabled ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  torch::NoGradGuard no_grad;
  for (auto& item : named_parameters()) {
    // Not LoCon's adapters: the optimizer holds them as views of one flat buffer.
    if (item.value().dim() == 4 && item.key().find("lora_") == std::string::npos) {
      item.value().set_data(item.value().data().contiguous(format));
    }
  }
  channels_last_ = enabled;
}

void UNet2DConditionModelImpl::fuse_projections() {
  for (const auto& m : modules(/*include_self=*/false)) {
    if (auto* a = m->as<AttentionImpl>()) a->fuse_projections();
  }
}

void UNet2DConditionModelImpl::set_fused_kernels(bool enabled) {
  for (const auto& m : modules(/*include_self=*/false)) {
    if (auto* g = m->as<GEGLUImpl>()) g->fused_kernel = enabled;
  }
}

void UNet2DConditionModelImpl::set_gradient_checkpointing(bool enabled) {
  for (const auto& b : *down_blocks) b->as<UNetDownBlock>()->gradient_checkpointing = enabled;
  mid_block->gradient_checkpointing = enabled;
  for (const auto& b : *up_blocks) b->as<UNetUpBlock>()->gradient_checkpointing = enabled;
}

bool UNet2DConditionModelImpl::gradient_checkpointing() const { return mid_block->gradient_checkpointing; }

torch::Tensor UNet2DConditionModelImpl::forward(const torch::Tensor& sample_in, const torch::Tensor& timesteps_in,
                                                const torch::Tensor& context, const torch::Tensor& text_embeds,
                                                const torch::Tensor& time_ids) {
  const auto& c = config_;
  const std::int64_t B = sample_in.size(0);
  torch::Tensor sample = c.center_input_sample ? sample_in * 2.0 - 1.0 : sample_in;
  if (channels_last_) sample = sample.contiguous(at::MemoryFormat::ChannelsLast);
  torch::Tensor timesteps = timesteps_in.dim() == 0 ? timesteps_in.reshape({1}) : timesteps_in;
  timesteps = timesteps.to(sample.device()).expand({B});

  // The sinusoids are float32; the MLP runs in the weights' dtype.
  const auto dtype = sample.scalar_type();
  torch::Tensor emb = time_embedding(
      timestep_embedding(timesteps, c.block_out_channels[0], c.flip_sin_to_cos, c.freq_shift).to(dtype));
  if (add_embedding) {
    if (!text_embeds.defined() || !time_ids.defined()) {
      throw Error("UNet2DConditionModel with addition_embed_type \"text_time\" needs text_embeds and time_ids");
    }
    torch::Tensor time_embeds =
        timestep_embedding(time_ids.flatten(), c.addition_time_embed_dim, c.flip_sin_to_cos, c.freq_shift);
    time_embeds = time_embeds.reshape({B, -1});
    torch::Tensor add = torch::cat({text_embeds.to(time_embeds.scalar_type()), time_embeds}, -1).to(dtype);
    emb = emb + add_embedding(add);
  }

  // Latent sizes that are not multiples of 2^(upsamplers) need explicit upsample sizes.
  const std::int64_t factor = std::int64_t{1} << (up_blocks->size() - 1);
  const bool forward_upsample_size = sample.size(-2) % factor != 0 || sample.size(-1) % factor != 0;

  torch::Tensor h = conv_in(sample);
  std::vector<torch::Tensor> skips{h};
  for (const auto& block : *down_blocks) h = block->as<UNetDownBlock>()->forward(h, emb, context, skips);
  h = mid_block(h, emb, context);
  for (std::size_t i = 0; i < up_blocks->size(); ++i) {
    auto up = up_blocks[i]->as<UNetUpBlock>();
    std::optional<std::vector<std::int64_t>> size;
    const bool is_final = i + 1 == up_blocks->size();
    if (!is_final && forward_upsample_size) {
      // The skip the next block consumes first sits just below this block's skips.
      const torch::Tensor& next = skips[skips.size() - up->num_resnets() - 1];
      size = std::vector<std::int64_t>{next.size(2), next.size(3)};
    }
    h = up->forward(h, emb, context, skips, size);
  }
  return conv_out(torch::silu(conv_norm_out(h)));
}

}  // namespace sdxl::nn
