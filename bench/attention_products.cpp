// What attention's two batched products cost on the CPU per training step, forward and
// backward: torch::matmul (LibTorch's per-matrix bmm loop, after copying the per-head views into
// a contiguous batch) against nn/batched_matmul (one BLAS call per matrix on the views). Shapes
// are those of the UNet's attentions at one image size: for each level with attention, its
// self-attention (tokens × tokens) and cross-attention (tokens × 77) products, times the number
// of transformer blocks there. The two variants alternate within the process, `--rounds` times,
// so a slow spell of the machine hits both.
//   bench_attention_products [--unet DIR/unet/config.json] [--batch 4] [--size 64] [--rounds 20]
#include "sdxl_dreambooth/model/unet_config.h"
#include "sdxl_dreambooth/nn/batched_matmul.h"
#include "sdxl_dreambooth/util/openblas_kernels.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

using namespace sdxl;

namespace {

struct Product {
  torch::Tensor q, k, v;  // [B, h, L, d] views of [B, L, h·d], as attention makes them
  int count;              // transformer blocks of this shape
};

torch::Tensor heads(std::int64_t b, std::int64_t l, std::int64_t h, std::int64_t d) {
  return torch::randn({b, l, h * d}).view({b, l, h, d}).transpose(1, 2).requires_grad_();
}

// Forward and backward of softmax(q kᵀ) v for every block, with `mm` as the product.
template <typename F>
double run(const std::vector<Product>& products, F mm) {
  const auto t0 = std::chrono::steady_clock::now();
  for (const auto& p : products) {
    for (int i = 0; i < p.count; ++i) {
      const torch::Tensor probs = torch::softmax(mm(p.q, p.k.transpose(-1, -2)), -1);
      mm(probs, p.v).sum().backward();
    }
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  util::use_best_openblas_kernels();
  std::string unet_path = "../shared/reference/tiny-sdxl/unet/config.json";
  std::int64_t batch = 4, size = 64;
  int rounds = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--unet") unet_path = v;
    else if (a == "--batch") batch = std::stoll(v);
    else if (a == "--size") size = std::stoll(v);
    else if (a == "--rounds") rounds = std::stoi(v);
    else {
      std::fprintf(stderr, "usage: bench_attention_products [--unet CONFIG.json] [--batch 4] [--size 64] [--rounds 20]\n");
      return 2;
    }
  }
  const model::UNetConfig c = model::UNetConfig::load(unet_path);
  torch::manual_seed(0);
  std::vector<Product> products;
  const std::size_t levels = c.block_out_channels.size();
  for (std::size_t level = 1; level < levels; ++level) {  // SDXL: no attention at the first level
    const std::int64_t side = size / 8 / (std::int64_t{1} << level);
    const std::int64_t channels = c.block_out_channels[level], h = c.num_attention_heads[level], d = channels / h;
    // Down blocks: layers_per_block attentions; up blocks: one more; the mid block: one.
    const std::int64_t layers = c.transformer_layers_per_block[level];
    const std::int64_t up_layers = c.reverse_transformer_layers_per_block[levels - 1 - level];
    int blocks = static_cast<int>(layers * c.layers_per_block[level] + up_layers * (c.layers_per_block[level] + 1));
    if (level + 1 == levels) blocks += static_cast<int>(layers);
    const std::int64_t tokens = side * side;
    products.push_back({heads(batch, tokens, h, d), heads(batch, tokens, h, d), heads(batch, tokens, h, d), blocks});
    products.push_back({heads(batch, tokens, h, d), heads(batch, 77, h, d), heads(batch, 77, h, d), blocks});
    std::printf("level %zu: %lld tokens, %lld heads of %lld, %d blocks (self and cross)\n", level,
                static_cast<long long>(tokens), static_cast<long long>(h), static_cast<long long>(d), blocks);
  }
  const auto matmul = [](const torch::Tensor& a, const torch::Tensor& b) { return torch::matmul(a, b); };
  const auto direct = [](const torch::Tensor& a, const torch::Tensor& b) { return nn::batched_matmul(a, b); };
  std::printf("direct path: %s\n", nn::batched_matmul_is_direct(products[0].q, products[0].k.transpose(-1, -2))
                                       ? "yes"
                                       : "no (LibTorch's BLAS exports no sgemm_)");
  run(products, matmul), run(products, direct);  // warm-up
  std::vector<double> a, b;
  for (int r = 0; r < rounds; ++r) {
    a.push_back(run(products, matmul));
    b.push_back(run(products, direct));
  }
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  std::printf("per step, median of %d: torch::matmul %.3f ms, nn::batched_matmul %.3f ms (%.2fx)\n", rounds,
              a[a.size() / 2] * 1e3, b[b.size() / 2] * 1e3, a[a.size() / 2] / b[b.size() / 2]);
  return 0;
}
