#include "sdxl_dreambooth/train/train_step.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/nn/adapter_cast.h"
#include "sdxl_dreambooth/train/grad_norm.h"
#include "sdxl_dreambooth/train/gradient_sync.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>

namespace sdxl::train {
namespace {

using Clock = std::chrono::steady_clock;

double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

std::string fmt_g(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// With accumulation a step is several forward/backward passes: a preemption request is heard
// between them (every rank agrees), not only at the step's end.
bool preempted_between_micro_batches(const TrainStepParts& p) {
  if (!p.signals) return false;
  return p.comm->host().all_reduce_max(p.signals->requested() ? 1.0 : 0.0, "preemption check between micro-batches") >
         0;
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
  torch::Tensor loss;  // summed on the device: reading it here would make the host wait
  nn::UNet2DConditionModel unet = p.unet;  // a handle: the same module
  auto forward = [&](const DiffusionBatch& batch) {
    // Only around the forward pass: checkpointed blocks recompute in backward with their own
    // casts.
    std::optional<nn::AdapterCast> cast;
    if (p.unet_lora && p.cast_adapters_once.value_or(batch.latents.is_cuda()) && !unet->gradient_checkpointing()) {
      cast.emplace(*p.unet_lora, unet->conv_in->weight.scalar_type());
    }
    return p.edm ? edm_diffusion_loss(unet, *p.edm, batch, p.loss) : diffusion_loss(unet, *p.schedule, batch, p.loss);
  };
  // Returns the micro-batch's share of the step's loss.
  auto backward = [&](const LossResult& r) {
    // accelerate divides by the accumulation steps, so gradients are a mean over micro-batches.
    p.scaler->scale_loss(r.loss / static_cast<double>(p.grad_accum)).backward();
    return r.loss.detach().to(torch::kFloat) / static_cast<double>(p.grad_accum);
  };
  std::vector<bool> has_grad;
  const torch::Device device = p.params.empty() ? torch::Device(torch::kCPU) : p.params.front().device();
  torch::Tensor graph_grads;  // with a graph: the micro-batches' gradients, summed here
  for (std::int64_t micro = 0; micro < p.grad_accum; ++micro) {
    if (micro > 0 && preempted_between_micro_batches(p)) {
      p.optimizer->zero_grad();
      result.stop_requested = result.abandoned = true;
      return result;
    }
    const auto t0 = mark();
    const DiffusionBatch batch = next_batch(micro);
    on_gpu = batch.latents.is_cuda();
    const auto t1 = mark();
    torch::Tensor part;
    auto t2 = t1;
    if (p.graph) {
      part = p.graph->run(batch, [&](const DiffusionBatch& b) { return backward(forward(b)); }, p.params);
      // A replay writes its gradients rather than adding to them, and the next rewrites them.
      torch::NoGradGuard no_grad;
      const torch::Tensor g = flatten_gradients(p.params, device, &has_grad);
      if (micro == 0) graph_grads = p.grad_accum > 1 ? g.clone() : g;
      else graph_grads.add_(g);
      t2 = mark();
    } else {
      const LossResult r = forward(batch);
      t2 = mark();
      part = backward(r);
    }
    loss = loss.defined() ? loss + part : part;
    const auto t3 = mark();
    times.data_s += seconds(t0, t1);
    times.forward_s += seconds(t1, t2);
    times.backward_s += seconds(t2, t3);
  }
  // From here the gradient is one flat buffer: packing it, unscaling, clipping and the optimizer are a
  // handful of operations however many adapters there are.
  const auto t4 = mark();
  torch::Tensor flat = p.graph ? graph_grads : flatten_gradients(p.params, device, &has_grad);
  const auto t5 = mark();
  p.comm->set_context("step " + std::to_string(step + 1));
  // The same collectives at every world size, one rank included (dist/collectives.h).
  loss = average_flat_gradient(flat, loss, p.comm->device());
  // Every rank stops at the same step and steps the parameters some rank has a gradient for
  // (a missing one is zeros in the all-reduced buffer). A host (MPI) all-reduce, under NCCL
  // too: the host does not wait for the GPU.
  result.stop_requested = p.signals && p.signals->requested();
  has_grad = agree_on_gradients(has_grad, result.stop_requested, p.comm->host());
  const auto t6 = mark();
  p.scaler->unscale_flat(flat);
  result.loss = loss;
  result.grad_norm = clip_flat_grad_norm(flat, p.max_grad_norm);
  bool finite = true;
  if (p.scaler->enabled()) {
    // fp16: the host decides whether this step updates anything.
    const StepValues v = read_step_values({result}).front();
    finite = std::isfinite(v.loss) && std::isfinite(v.grad_norm);
  }
  if (!finite) {
    p.scaler->update(false);
    result.skipped = true;
  } else {
    // Without loss scaling a non-finite step is applied too; check_step_finite ends the run
    // when the loop reads it back, before anything built from the weights is written.
    p.optimizer->step(lr, flat, has_grad);
    p.scaler->update(true);
  }
  p.optimizer->zero_grad();
  const auto t7 = mark();
  times.allreduce_s += seconds(t5, t6);
  times.optimizer_s += seconds(t4, t5) + seconds(t6, t7);
  return result;
}

std::vector<StepValues> read_step_values(const std::vector<StepResult>& results) {
  std::vector<StepValues> out(results.size());
  if (results.empty()) return out;
  std::vector<torch::Tensor> parts;
  parts.reserve(2 * results.size());
  for (const auto& r : results) {
    parts.push_back(r.loss.detach().reshape({1}).to(torch::kFloat));
    parts.push_back(r.grad_norm.detach().reshape({1}).to(torch::kFloat));
  }
  const torch::Tensor host = torch::cat(parts).to(torch::kCPU, torch::kDouble).contiguous();
  const double* v = host.data_ptr<double>();
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = {v[2 * i], v[2 * i + 1]};
  return out;
}

void check_step_finite(std::int64_t step, const StepResult& result, const StepValues& values) {
  if (result.skipped || (std::isfinite(values.loss) && std::isfinite(values.grad_norm))) return;
  throw Error("training diverged at step " + std::to_string(step) + ": loss " + fmt_g(values.loss) +
                  ", gradient norm " + fmt_g(values.grad_norm) + " (not finite); the LoRA was not written",
              "lower train.learning_rate or train.max_grad_norm; with fp16, mixed_precision = \"bf16\" keeps "
              "float32's range");
}

}  // namespace sdxl::train
