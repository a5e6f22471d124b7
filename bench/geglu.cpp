// What GEGLU's product and its gradient cost per training step: the 70 feed-forwards of SDXL's
// UNet at one image size, each a forward and a backward of a · gelu(gate). Variants:
//   aten     autograd's composition a * gelu(gate) (keeps gelu(gate) for the backward)
//   product  nn/geglu_product (keeps a and gate, recomputes gelu(gate) in the backward)
//   fused    nn/geglu_product with its CUDA kernels (train.fused_kernels; CUDA builds with them)
// Also the traffic each variant moves, counted in passes over one of those tensors (reads plus
// writes: aten 5 forward + 9 backward, product 5 + 11, fused 3 + 5), and the rate it implies.
//   bench_geglu [--batch 1] [--size 1024] [--iters 5] [--device cpu|cuda] [--dtype bf16|fp16|fp32]
#include "sdxl_dreambooth/nn/geglu_product.h"
#include "sdxl_dreambooth/util/openblas_kernels.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

using namespace sdxl;

namespace {

struct Block {
  torch::Tensor a, gate, grad;
};

// SDXL base's transformer blocks at a `size`² image: 10 at 1/16 of the side (640 channels,
// feed-forward width 2560) and 60 at 1/32 (1280 channels, width 5120). One tensor set per
// distinct shape, used by every block of that shape.
std::vector<std::pair<Block, int>> sdxl_blocks(std::int64_t batch, std::int64_t size, const torch::TensorOptions& o) {
  std::vector<std::pair<Block, int>> out;
  for (const auto& [side, width, count] : {std::tuple<std::int64_t, std::int64_t, int>{size / 16, 2560, 10},
                                           std::tuple<std::int64_t, std::int64_t, int>{size / 32, 5120, 60}}) {
    const std::vector<std::int64_t> shape{batch * side * side, width};
    Block b{(torch::randn(shape) * 2).to(o).requires_grad_(), (torch::randn(shape) * 3).to(o).requires_grad_(),
            torch::randn(shape).to(o)};
    out.emplace_back(std::move(b), count);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  util::use_best_openblas_kernels();
  std::int64_t batch = 1, size = 1024;
  int iters = 5;
  std::string device_name = "cpu", dtype_name = "bf16";
  const auto usage = [] {
    std::fprintf(stderr,
                 "usage: bench_geglu [--batch 1] [--size 1024] [--iters 5] [--device cpu|cuda] "
                 "[--dtype bf16|fp16|fp32]\n");
    return 2;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return usage();
    const std::string value = argv[++i];
    if (a == "--device") {
      device_name = value;
    } else if (a == "--dtype") {
      dtype_name = value;
    } else if (a == "--batch" || a == "--size" || a == "--iters") {
      char* end = nullptr;
      const long long n = std::strtoll(value.c_str(), &end, 10);
      if (end == value.c_str() || *end != '\0' || n < 1 || n > 100000) {
        std::fprintf(stderr, "error: %s %s: expected a whole number from 1 to 100000\n", a.c_str(), value.c_str());
        return 2;
      }
      if (a == "--batch") batch = n;
      else if (a == "--size") size = n;
      else iters = static_cast<int>(n);
    } else {
      return usage();
    }
  }
  if (device_name != "cpu" && device_name != "cuda") {
    std::fprintf(stderr, "error: --device %s: expected cpu or cuda\n", device_name.c_str());
    return 2;
  }
  if (size % 32 != 0) {
    std::fprintf(stderr, "error: --size %lld: expected a multiple of 32\n", static_cast<long long>(size));
    return 2;
  }
  const torch::Dtype dtype = dtype_name == "bf16"   ? torch::kBFloat16
                             : dtype_name == "fp16" ? torch::kHalf
                             : dtype_name == "fp32" ? torch::kFloat
                                                    : torch::kDouble;
  if (dtype == torch::kDouble) {
    std::fprintf(stderr, "error: --dtype %s: expected bf16, fp16 or fp32\n", dtype_name.c_str());
    return 2;
  }
  try {
    const torch::Device device(device_name);
    const auto blocks = sdxl_blocks(batch, size, torch::TensorOptions().device(device).dtype(dtype));
    double unit_bytes = 0;  // one pass over every block's tensor
    for (const auto& [b, count] : blocks) unit_bytes += static_cast<double>(count) * b.a.numel() * b.a.element_size();
    const auto sync = [&] {
      if (device.is_cuda()) torch::cuda::synchronize();
    };
    const auto run = [&](const std::string& how) {
      const auto pass = [&] {
        for (const auto& [b, count] : blocks) {
          for (int i = 0; i < count; ++i) {
            const torch::Tensor out =
                how == "aten" ? b.a * torch::gelu(b.gate) : nn::geglu_product(b.a, b.gate, how == "fused");
            torch::autograd::grad({out}, {b.a, b.gate}, {b.grad});
          }
        }
      };
      pass();
      sync();
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < iters; ++i) pass();
      sync();
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
    };
    std::printf("GEGLU of SDXL's 70 transformer blocks at %lld², batch %lld, %s on %s: one pass over every "
                "block's tensor is %.2f GiB; %d iterations\n",
                static_cast<long long>(size), static_cast<long long>(batch), dtype_name.c_str(), device_name.c_str(),
                unit_bytes / (1 << 30), iters);
    std::vector<std::pair<std::string, int>> variants{{"aten", 14}, {"product", 16}};
    if (device.is_cuda() && nn::geglu_kernels_built()) variants.emplace_back("fused", 8);
    for (const auto& [how, passes] : variants) {
      const double s = run(how);
      std::printf("%-8s forward+backward %8.2f ms per step; %2d passes, %.1f GB/s\n", how.c_str(), s * 1e3, passes,
                  passes * unit_bytes / s / 1e9);
    }
    if (device.is_cuda() && !nn::geglu_kernels_built()) std::printf("fused    (this build has no fused kernels)\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
