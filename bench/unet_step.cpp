// UNet forward and forward+backward time and peak memory on CPU.
//   bench_unet CONFIG.json LATENT_SIZE [--iters N] [--checkpointing] [--lora-like] [--lora RANK]
//              [--bf16]
// CONFIG.json: a UNet config (tiny-sdxl/unet/config.json, or SDXL's real one for the
// full-size architecture with random weights). --lora-like trains only the to_q/to_k/to_v/
// to_out.0 weights (the LoRA targets), freezing the rest. --lora RANK does what a training
// step does: real adapters on those projections (frozen base), the diffusion MSE, backward and
// an AdamW step, timed separately. --bf16: base weights in bfloat16 (adapters stay float32).
#include "sdxl_dreambooth/nn/lora_network.h"
#include "sdxl_dreambooth/nn/unet_2d_condition.h"
#include "sdxl_dreambooth/train/adamw.h"
#include "sdxl_dreambooth/util/openblas_kernels.h"

#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

using namespace sdxl;

namespace {

double peak_rss_gib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / double(1 << 20);  // KiB -> GiB
}

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// The training step of src/train: adapters, MSE against noise, backward, AdamW.
int run_lora_steps(nn::UNet2DConditionModel& unet, const model::UNetConfig& cfg, std::int64_t size, int iters,
                   int rank, bool bf16, bool ckpt) {
  const auto dtype = bf16 ? torch::kBFloat16 : torch::kFloat;
  unet->to(dtype);
  auto gen = at::detail::createCPUGenerator(0);
  const auto lora = nn::LoraNetwork::inject(*unet, {rank, double(rank), {"to_q", "to_k", "to_v", "to_out.0"}}, gen,
                                            "UNet");
  train::AdamW opt(lora.parameters(), {});
  const std::int64_t ctx = cfg.cross_attention_dim[0];
  const auto sample = torch::randn({1, cfg.in_channels, size, size}).to(dtype);
  const auto noise = torch::randn({1, cfg.in_channels, size, size});
  const auto context = torch::randn({1, 77, ctx}).to(dtype);
  const auto text = torch::randn({1, cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim}).to(dtype);
  const auto time_ids = torch::tensor({{1024.f, 1024.f, 0.f, 0.f, 1024.f, 1024.f}}).to(dtype);
  const auto t = torch::tensor({500});
  std::printf("LoRA rank %d on %zu projections (%lld parameters), latents %lldx%lld, %s, threads %d, checkpointing %s\n",
              rank, lora.size(), (long long)lora.num_parameters(), (long long)size, (long long)size,
              bf16 ? "bf16" : "fp32", at::get_num_threads(), ckpt ? "on" : "off");
  double fwd = 0, bwd = 0, optim = 0;
  for (int i = 0; i <= iters; ++i) {  // iteration 0 is warm-up
    double t0 = now();
    auto loss = torch::mse_loss(unet(sample, t, context, text, time_ids).to(torch::kFloat), noise);
    double t1 = now();
    loss.backward();
    double t2 = now();
    opt.step(1e-4);
    opt.zero_grad();
    double t3 = now();
    if (i > 0) {
      fwd += t1 - t0;
      bwd += t2 - t1;
      optim += t3 - t2;
    }
  }
  std::printf("per step: forward %.3f s, backward %.3f s, optimizer %.4f s (mean of %d), peak RSS %.2f GiB\n",
              fwd / iters, bwd / iters, optim / iters, iters, peak_rss_gib());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  sdxl::util::use_best_openblas_kernels();  // as the program does: see util/openblas_kernels.h
  if (argc < 3) {
    std::fprintf(stderr, "usage: bench_unet CONFIG.json LATENT_SIZE [--iters N] [--checkpointing] [--lora-like]\n");
    return 2;
  }
  int iters = 3;
  bool ckpt = false, lora_like = false, bf16 = false;
  int lora_rank = 0;
  for (int i = 3; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--iters") && i + 1 < argc) iters = std::stoi(argv[++i]);
    if (!std::strcmp(argv[i], "--checkpointing")) ckpt = true;
    if (!std::strcmp(argv[i], "--lora-like")) lora_like = true;
    if (!std::strcmp(argv[i], "--lora") && i + 1 < argc) lora_rank = std::stoi(argv[++i]);
    if (!std::strcmp(argv[i], "--bf16")) bf16 = true;
  }
  const auto cfg = model::UNetConfig::load(argv[1]);
  const std::int64_t size = std::stoll(argv[2]);
  torch::manual_seed(0);
  nn::UNet2DConditionModel unet(cfg);
  unet->set_gradient_checkpointing(ckpt);
  std::int64_t params = 0;
  for (auto& p : unet->named_parameters()) {
    params += p.value().numel();
    if (lora_like) {
      const auto& k = p.key();
      const bool target = k.find("to_q.") != std::string::npos || k.find("to_k.") != std::string::npos ||
                          k.find("to_v.") != std::string::npos || k.find("to_out.0.") != std::string::npos;
      p.value().set_requires_grad(target && k.find("weight") != std::string::npos);
    }
  }
  const std::int64_t ctx = cfg.cross_attention_dim[0];
  if (lora_rank > 0) return run_lora_steps(unet, cfg, size, iters, lora_rank, bf16, ckpt);
  const auto sample = torch::randn({1, cfg.in_channels, size, size});
  const auto context = torch::randn({1, 77, ctx});
  const auto text = torch::randn({1, cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim});
  const auto time_ids = torch::tensor({{1024.f, 1024.f, 0.f, 0.f, 1024.f, 1024.f}});
  const auto t = torch::tensor({500});
  std::printf("UNet %lld parameters, latents %lldx%lld, threads %d, checkpointing %s\n", (long long)params,
              (long long)size, (long long)size, at::get_num_threads(), ckpt ? "on" : "off");
  double fwd = 0, fwdbwd = 0;
  for (int i = 0; i <= iters; ++i) {  // iteration 0 is warm-up
    unet->eval();
    double t0 = now();
    {
      torch::NoGradGuard g;
      unet(sample, t, context, text, time_ids);
    }
    double t1 = now();
    unet->train();
    unet(sample, t, context, text, time_ids).pow(2).mean().backward();
    double t2 = now();
    if (i > 0) {
      fwd += t1 - t0;
      fwdbwd += t2 - t1;
    }
  }
  std::printf("forward %.3f s, forward+backward %.3f s (mean of %d), peak RSS %.2f GiB\n", fwd / iters, fwdbwd / iters,
              iters, peak_rss_gib());
  return 0;
}
