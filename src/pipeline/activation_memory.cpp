#include "sdxl_dreambooth/pipeline/activation_memory.h"

#include <algorithm>
#include <cmath>

namespace sdxl::pipeline {

namespace {

double element_bytes(torch::Dtype dtype) { return static_cast<double>(c10::elementSize(dtype)); }

// The portable attention path keeps the [query chunk x keys] scores in the compute dtype
// next to their float32 softmax.
double scores_bytes(std::int64_t heads, std::int64_t tokens, std::int64_t keys, double b, const AttentionCost& a) {
  if (!a.scores_materialized) return 0;
  return static_cast<double>(heads) * static_cast<double>(std::min(tokens, a.query_chunk)) *
         static_cast<double>(keys) * (b + 4.0);
}

std::int64_t halve(std::int64_t n) { return (n + 1) / 2; }  // stride-2 conv with padding 1

// Allocator slack and the small tensors the block-level accounting leaves out; calibrated
// against peak RSS on CPU (docs/benchmarks.md, bench_generation_memory).
constexpr double kSlack = 1.25;

}  // namespace

double unet_forward_bytes_per_sample(const model::UNetConfig& c, std::int64_t height, std::int64_t width,
                                     torch::Dtype dtype, const AttentionCost& attention) {
  const double b = element_bytes(dtype);
  const std::size_t levels = c.block_out_channels.size();
  std::vector<double> tokens(levels);
  std::int64_t h = height / 8, w = width / 8;
  for (std::size_t i = 0; i < levels; ++i) {
    tokens[i] = static_cast<double>(h * w);
    if (i + 1 < levels) h = halve(h), w = halve(w);
  }
  // Down-path outputs wait on the skip stack until the up path consumes them.
  double skips = static_cast<double>(c.block_out_channels[0]) * tokens[0];
  double work = 0;
  for (std::size_t i = 0; i < levels; ++i) {
    const double ch = static_cast<double>(c.block_out_channels[i]);
    const double layers = static_cast<double>(c.layers_per_block.at(i));
    skips += layers * ch * tokens[i] + (i + 1 < levels ? ch * tokens[i + 1] : 0.0);
    // A resnet of the up path: its input (previous output and a skip, concatenated), two
    // normalised/activated copies and its output.
    const double wider = static_cast<double>(
        std::max(c.block_out_channels[i], i + 1 < levels ? c.block_out_channels[i + 1] : c.block_out_channels[i]));
    work = std::max(work, (2 * wider + 3 * ch) * tokens[i] * b);
    const bool attends = c.down_block_types.at(i).find("CrossAttn") != std::string::npos;
    if (attends && c.transformer_layers_per_block.at(i) > 0) {
      // Residual, norm, q/k/v, attention output and the GEGLU feed-forward (8C, then 4C + 4C).
      const auto n = static_cast<std::int64_t>(tokens[i]);
      work = std::max(work, 19 * ch * tokens[i] * b + scores_bytes(c.num_attention_heads.at(i), n, n, b, attention));
    }
  }
  return kSlack * (skips * b + work);
}

double unet_forward_fixed_bytes(const model::UNetConfig& c, torch::Dtype dtype) {
  // The widest convolution is the first of an up-path resnet: its input is the previous
  // output and a skip concatenated.
  double widest = 0;
  const std::size_t levels = c.block_out_channels.size();
  for (std::size_t i = 0; i < levels; ++i) {
    const double ch = static_cast<double>(c.block_out_channels[i]);
    const double wider = static_cast<double>(
        std::max(c.block_out_channels[i], i + 1 < levels ? c.block_out_channels[i + 1] : c.block_out_channels[i]));
    widest = std::max(widest, ch * (ch + wider) * 9.0);
  }
  return widest * element_bytes(dtype);
}

double vae_decode_bytes(const model::VaeConfig& c, std::int64_t height, std::int64_t width, torch::Dtype dtype,
                        const AttentionCost& attention) {
  const double b = element_bytes(dtype);
  std::vector<std::int64_t> ch(c.block_out_channels.rbegin(), c.block_out_channels.rend());
  double tokens = static_cast<double>((height / 8) * (width / 8));
  // A working copy of the widest convolution weight, as for the UNet.
  const double widest_conv = static_cast<double>(ch[0]) * static_cast<double>(ch[0]) * 9.0 * b;
  // Mid block: single-head attention over every latent pixel.
  const double mid = static_cast<double>(ch[0]);
  double peak = 6 * mid * tokens * b +
                scores_bytes(1, static_cast<std::int64_t>(tokens), static_cast<std::int64_t>(tokens), b, attention);
  for (std::size_t j = 0; j < ch.size(); ++j) {
    const double in = static_cast<double>(j == 0 ? ch[0] : ch[j - 1]), out = static_cast<double>(ch[j]);
    // Measured (bench_generation_memory): about three copies of a resnet's input and three of
    // its output are alive at once here, where the convolutions re-lay out their operands.
    peak = std::max(peak, (3 * in + 3 * out) * tokens * b);
    if (j + 1 < ch.size()) {
      // The upsampler: its input, the 2x nearest copy and the convolution's output.
      peak = std::max(peak, out * (tokens + 8 * tokens) * b);
      tokens *= 4;
    }
  }
  return kSlack * peak + widest_conv;
}

std::int64_t batch_size_for_budget(double budget_bytes, double fixed_bytes, double bytes_per_image,
                                   std::int64_t max_images) {
  if (max_images < 1) return 1;
  if (!(bytes_per_image > 0)) return max_images;
  const double fit = std::floor((budget_bytes - fixed_bytes) / bytes_per_image);
  return std::clamp<std::int64_t>(fit >= static_cast<double>(max_images) ? max_images : static_cast<std::int64_t>(fit),
                                  1, max_images);
}

}  // namespace sdxl::pipeline
