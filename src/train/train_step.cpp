#include "sdxl_dreambooth/train/train_step.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/train/grad_norm.h"
#include "sdxl_dreambooth/train/gradient_sync.h"

#include <chrono>
#include <cmath>
#include <cstdio>

namespace sdxl::train {
namespace {

using Clock = std::chrono::steady_clock;

double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

std::string fmt_g(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

}  // namespace

StepResult run_train_step(const TrainStepParts& p, std::int64_t step, double lr,
                          const std::function<DiffusionBatch(std::int64_t)>& next_batch, StepTimes& times) {
  bool on_gpu = false;
  // The clock is read after the device has caught up when phases are synchronised.
  auto mark = [&] {
    if (p.synchronize_phases && on_gpu) torch::cuda::synchronize();
    return Clock::now();
  };
  StepResult result;
  nn::UNet2DConditionModel unet = p.unet;  // a handle: the same module
  for (std::int64_t micro = 0; micro < p.grad_accum; ++micro) {
    const auto t0 = mark();
    const DiffusionBatch batch = next_batch(micro);
    on_gpu = batch.latents.is_cuda();
    const auto t1 = mark();
    const LossResult r = diffusion_loss(unet, *p.schedule, batch, p.loss);
    const auto t2 = mark();
    // accelerate divides by the accumulation steps, so gradients are a mean over micro-batches.
    p.scaler->scale_loss(r.loss / static_cast<double>(p.grad_accum)).backward();
    result.loss += r.loss.item<double>() / static_cast<double>(p.grad_accum);
    const auto t3 = mark();
    times.data_s += seconds(t0, t1);
    times.forward_s += seconds(t1, t2);
    times.backward_s += seconds(t2, t3);
  }
  // From here the gradient is one flat buffer: packing it, unscaling, clipping and AdamW are a
  // handful of operations however many adapters there are.
  const auto t4 = mark();
  std::vector<bool> has_grad;
  const torch::Device device = p.params.empty() ? torch::Device(torch::kCPU) : p.params.front().device();
  torch::Tensor flat = flatten_gradients(p.params, device, &has_grad);
  const auto t5 = mark();
  p.comm->set_context("step " + std::to_string(step + 1));
  result.stop_requested = p.signals && p.signals->requested();
  if (p.comm->world_size() > 1) {
    result.loss = average_flat_gradient(flat, result.loss, *p.comm, &result.stop_requested);
    // After the all-reduce every rank has every gradient (a missing one is zeros), as the
    // per-tensor path always had.
    has_grad.assign(has_grad.size(), true);
  }
  const auto t6 = mark();
  p.scaler->unscale_flat(flat);
  result.grad_norm = clip_flat_grad_norm(flat, p.max_grad_norm);
  if (!std::isfinite(result.grad_norm) || !std::isfinite(result.loss)) {
    if (!p.scaler->enabled()) {
      throw Error("training diverged at step " + std::to_string(step + 1) + ": loss " + fmt_g(result.loss) +
                      ", gradient norm " + fmt_g(result.grad_norm) + " (not finite); the LoRA was not written",
                  "lower train.learning_rate, set train.max_grad_norm, or use mixed_precision = \"bf16\"");
    }
    p.scaler->update(false);
    result.skipped = true;
  } else {
    std::int64_t offset = 0;
    std::size_t first = 0;
    for (const auto& g : p.optimizers) {
      const std::size_t count = g.optimizer->params().size();
      const std::vector<bool> mine(has_grad.begin() + static_cast<std::ptrdiff_t>(first),
                                   has_grad.begin() + static_cast<std::ptrdiff_t>(first + count));
      g.optimizer->step(lr * g.lr_scale, flat.narrow(0, offset, g.optimizer->numel()), mine);
      offset += g.optimizer->numel();
      first += count;
    }
    p.scaler->update(true);
  }
  for (const auto& g : p.optimizers) g.optimizer->zero_grad();
  const auto t7 = mark();
  times.allreduce_s += seconds(t5, t6);
  times.optimizer_s += seconds(t4, t5) + seconds(t6, t7);
  return result;
}

}  // namespace sdxl::train
