#include "sdxl_dreambooth/model/unet_flops.h"

#include <vector>

namespace sdxl::model {

namespace {

struct Count {
  double forward = 0;
  double attention = 0;    // the score and value matmuls (their backward costs twice)
  double context_kv = 0;   // key/value projections of the frozen text context
  double prefix = -1;      // forward FLOPs before the first transformer block (no backward)
};

double conv(double cin, double cout, double pixels, double k = 3) { return 2 * cin * cout * k * k * pixels; }
double linear(double in, double out, double rows) { return 2 * in * out * rows; }

void resnet(Count& c, double cin, double cout, double pixels) {
  c.forward += conv(cin, cout, pixels) + conv(cout, cout, pixels) + (cin != cout ? conv(cin, cout, pixels, 1) : 0);
}

void transformer(Count& c, double ch, double pixels, std::int64_t layers, double context_dim, double tokens) {
  if (c.prefix < 0) c.prefix = c.forward;
  c.forward += 2 * linear(ch, ch, pixels);  // proj_in, proj_out
  for (std::int64_t l = 0; l < layers; ++l) {
    // attn1: q, k, v, out; softmax(q kᵀ) v over the pixels.
    c.forward += linear(ch, 3 * ch, pixels) + linear(ch, ch, pixels);
    c.attention += 2 * 2 * pixels * pixels * ch;
    // attn2: q and out on the pixels, k and v on the text context.
    const double kv = linear(context_dim, 2 * ch, tokens);
    c.forward += linear(ch, ch, pixels) + kv + linear(ch, ch, pixels);
    c.context_kv += kv;
    c.attention += 2 * 2 * pixels * tokens * ch;
    // GEGLU feed-forward: ch -> 2 x 4ch, then 4ch -> ch.
    c.forward += linear(ch, 8 * ch, pixels) + linear(4 * ch, ch, pixels);
  }
}

}  // namespace

UNetFlops unet_flops(const UNetConfig& cfg, std::int64_t height, std::int64_t width, std::int64_t context_tokens) {
  Count c;
  const auto& ch = cfg.block_out_channels;
  const std::size_t levels = ch.size();
  const double tokens = static_cast<double>(context_tokens);
  const auto attends = [](const std::string& type) { return type.find("CrossAttn") != std::string::npos; };
  std::int64_t h = height / 8, w = width / 8;
  const auto pixels = [&] { return static_cast<double>(h * w); };
  c.forward += conv(static_cast<double>(cfg.in_channels), static_cast<double>(ch[0]), pixels(),
                    static_cast<double>(cfg.conv_in_kernel));
  std::vector<double> skips{static_cast<double>(ch[0])};
  double prev = static_cast<double>(ch[0]);
  for (std::size_t i = 0; i < levels; ++i) {
    const double out = static_cast<double>(ch[i]);
    const double ctx = static_cast<double>(cfg.cross_attention_dim.at(i));
    for (std::int64_t j = 0; j < cfg.layers_per_block.at(i); ++j) {
      resnet(c, prev, out, pixels());
      prev = out;
      if (attends(cfg.down_block_types.at(i))) {
        transformer(c, out, pixels(), cfg.transformer_layers_per_block.at(i), ctx, tokens);
      }
      skips.push_back(out);
    }
    if (i + 1 < levels) {
      h = (h + 1) / 2, w = (w + 1) / 2;
      c.forward += conv(out, out, pixels());  // stride-2 downsampler
      skips.push_back(out);
    }
  }
  if (!cfg.mid_block_type.empty()) {
    const double top = static_cast<double>(ch.back());
    resnet(c, top, top, pixels());
    transformer(c, top, pixels(), cfg.transformer_layers_per_block.back(),
                static_cast<double>(cfg.cross_attention_dim.back()), tokens);
    resnet(c, top, top, pixels());
  }
  for (std::size_t u = 0; u < levels; ++u) {
    const std::size_t i = levels - 1 - u;  // the down level this up block mirrors
    const double out = static_cast<double>(ch[i]);
    for (std::int64_t j = 0; j <= cfg.layers_per_block.at(i); ++j) {
      resnet(c, prev + skips.back(), out, pixels());
      skips.pop_back();
      prev = out;
      if (attends(cfg.up_block_types.at(u))) {
        transformer(c, out, pixels(), cfg.reverse_transformer_layers_per_block.at(u),
                    static_cast<double>(cfg.cross_attention_dim.at(i)), tokens);
      }
    }
    if (u + 1 < levels) {
      h *= 2, w *= 2;
      c.forward += conv(out, out, pixels());  // upsampler after the 2x nearest interpolation
    }
  }
  c.forward += conv(static_cast<double>(ch[0]), static_cast<double>(cfg.out_channels), pixels(),
                    static_cast<double>(cfg.conv_out_kernel));
  UNetFlops f;
  f.forward = c.forward + c.attention;
  const double prefix = c.prefix < 0 ? f.forward : c.prefix;
  f.lora_training_step = 2 * f.forward + c.attention - prefix - c.context_kv;
  return f;
}

}  // namespace sdxl::model
