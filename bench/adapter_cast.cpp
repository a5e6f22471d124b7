// What casting the LoRA adapters to bf16 costs a training step: per use (each A and B where its
// layer runs, and a cast back in backward) against once per pass (nn::cast_together), for the
// 560 adapters of SDXL's attention projections. Each weight is consumed by one sum, so that
// gradients flow as in training, and the gradients are packed into one buffer as the training
// step packs them; "none" consumes the float32 weights without a cast, the floor both others
// pay too.
//   bench_adapter_cast [--rank 4] [--iters 50] [--device cpu|cuda]
#include "sdxl_dreambooth/nn/adapter_cast.h"
#include "sdxl_dreambooth/train/adamw.h"
#include "sdxl_dreambooth/train/gradient_sync.h"
#include "sdxl_dreambooth/util/openblas_kernels.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

using namespace sdxl;

namespace {

// (in, out) of every adapted projection: SDXL base has 70 transformer blocks, 10 at 640
// channels and 60 at 1280, each with to_q/to_k/to_v/to_out.0 of self-attention (C -> C) and
// of cross-attention (to_k/to_v read the 2048-wide text context).
std::vector<std::pair<std::int64_t, std::int64_t>> sdxl_projections() {
  std::vector<std::pair<std::int64_t, std::int64_t>> out;
  for (const auto& [channels, blocks] : {std::pair<std::int64_t, int>{640, 10}, {1280, 60}}) {
    for (int b = 0; b < blocks; ++b) {
      for (int i = 0; i < 4; ++i) out.emplace_back(channels, channels);
      out.emplace_back(channels, channels);
      out.emplace_back(2048, channels);
      out.emplace_back(2048, channels);
      out.emplace_back(channels, channels);
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  util::use_best_openblas_kernels();
  std::int64_t rank = 4;
  int iters = 50;
  std::string device_name = "cpu";
  const auto usage = [] {
    std::fprintf(stderr, "usage: bench_adapter_cast [--rank 4] [--iters 50] [--device cpu|cuda]\n");
    return 2;
  };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc || (a != "--rank" && a != "--iters" && a != "--device")) return usage();
    const std::string value = argv[++i];
    if (a == "--device") {
      device_name = value;
      continue;
    }
    char* end = nullptr;
    const long long n = std::strtoll(value.c_str(), &end, 10);
    if (end == value.c_str() || *end != '\0' || n < 1 || n > 1000000) {
      std::fprintf(stderr, "error: %s %s: expected a whole number from 1 to 1000000\n", a.c_str(), value.c_str());
      return 2;
    }
    if (a == "--rank") rank = n;
    else iters = static_cast<int>(n);
  }
  if (device_name != "cpu" && device_name != "cuda") {
    std::fprintf(stderr, "error: --device %s: expected cpu or cuda\n", device_name.c_str());
    return 2;
  }
  try {
    const torch::Device device(device_name);
    std::vector<torch::Tensor> params;
    for (const auto& [in, out] : sdxl_projections()) {
      params.push_back(torch::randn({rank, in}, torch::TensorOptions().device(device)).requires_grad_(true));
      params.push_back(torch::randn({out, rank}, torch::TensorOptions().device(device)).requires_grad_(true));
    }
    // As training holds them: side by side in AdamW's flat buffer.
    train::AdamW adamw(params, train::AdamWOptions{});
    std::int64_t numel = 0;
    for (const auto& p : params) numel += p.numel();

    const auto sync = [&] {
      if (device.is_cuda()) torch::cuda::synchronize();
    };
    const auto run = [&](const char* how) {
      const auto pass = [&] {
        std::vector<torch::Tensor> used;
        if (std::strcmp(how, "once") == 0) {
          used = nn::cast_together(params, torch::kBFloat16);
          if (used.empty()) throw std::runtime_error("the adapters are not side by side in AdamW's buffer");
        } else {
          for (const auto& p : params) used.push_back(std::strcmp(how, "per use") == 0 ? p.to(torch::kBFloat16) : p);
        }
        torch::Tensor loss = torch::zeros({}, torch::TensorOptions().device(device));
        for (const auto& w : used) loss = loss + w.sum(torch::kFloat);
        loss.backward();
        const torch::Tensor flat = train::flatten_gradients(params, device);  // as the step packs them
        for (auto& p : params) p.mutable_grad().reset();
      };
      for (int i = 0; i < 3; ++i) pass();
      sync();
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < iters; ++i) pass();
      sync();
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
    };
    std::printf("%zu adapter weights (%zu adapters, rank %lld, %lld parameters) on %s, %d iterations\n", params.size(),
                params.size() / 2, static_cast<long long>(rank), static_cast<long long>(numel), device_name.c_str(),
                iters);
    const double none = run("none"), per_use = run("per use"), once = run("once");
    std::printf("forward+backward per pass: none %.2f ms, per use %.2f ms (+%.2f), once %.2f ms (+%.2f)\n", none * 1e3,
                per_use * 1e3, (per_use - none) * 1e3, once * 1e3, (once - none) * 1e3);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
