#include "sdxl_dreambooth/train/step_graph.h"

#include "sdxl_dreambooth/error.h"

#if defined(SDXL_TORCH_CUDA)
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <array>
#include <sstream>

namespace sdxl::train {
namespace {

using Field = torch::Tensor DiffusionBatch::*;
constexpr std::array<std::pair<Field, const char*>, 6> kFields{{
    {&DiffusionBatch::latents, "latents"},
    {&DiffusionBatch::noise, "noise"},
    {&DiffusionBatch::timesteps, "timesteps"},
    {&DiffusionBatch::prompt_embeds, "prompt_embeds"},
    {&DiffusionBatch::text_embeds, "text_embeds"},
    {&DiffusionBatch::time_ids, "time_ids"},
}};

std::string describe(const torch::Tensor& t) {
  if (!t.defined()) return "none";
  std::ostringstream s;
  s << t.sizes() << " " << t.scalar_type() << " on " << t.device();
  return s.str();
}

void clear_grads(const std::vector<torch::Tensor>& params) {
  for (const auto& p : params) {
    if (p.grad().defined()) p.mutable_grad().reset();
  }
}

}  // namespace

#if defined(SDXL_TORCH_CUDA)
struct StepGraph::Cuda {
  explicit Cuda(c10::DeviceIndex device) : stream(at::cuda::getStreamFromPool(false, device)) {}
  // CUDA graphs are recorded on a stream other than the default one; the warm-up pass runs on
  // the same stream so that cuBLAS's per-stream workspace exists before recording starts.
  c10::cuda::CUDAStream stream;
  at::cuda::CUDAGraph graph;
};
#else
struct StepGraph::Cuda {};
#endif

StepGraph::StepGraph(Mode mode) : mode_(mode) {
#if !defined(SDXL_TORCH_CUDA)
  if (mode == Mode::kCuda) {
    throw UsageError("train.cuda_graphs needs a CUDA build of LibTorch (this one is CPU-only)");
  }
#endif
}

StepGraph::~StepGraph() = default;

torch::Tensor StepGraph::run(const DiffusionBatch& batch, const Pass& pass, const std::vector<torch::Tensor>& params) {
  torch::NoGradGuard no_grad;  // the copies into the inputs are not part of any graph
  if (!recorded_) {
    for (const auto& field : kFields) {
      const torch::Tensor& t = batch.*field.first;
      inputs_.*field.first = t.defined() ? t.clone() : t;
    }
    {
      torch::AutoGradMode grad(true);
      record(pass, params);
    }
    recorded_ = true;
  } else {
    if (params.size() != grads_.size()) {
      throw Error("train.cuda_graphs: the step trains " + std::to_string(params.size()) +
                  " tensors, the recorded graph " + std::to_string(grads_.size()));
    }
    for (const auto& [field, name] : kFields) {
      const torch::Tensor& from = batch.*field;
      torch::Tensor& to = inputs_.*field;
      if (from.defined() != to.defined() || (from.defined() && (from.sizes() != to.sizes() ||
                                                                 from.scalar_type() != to.scalar_type() ||
                                                                 from.device() != to.device()))) {
        throw Error("train.cuda_graphs: the batch's " + std::string(name) + " is " + describe(from) +
                    ", the recorded graph's " + describe(to) + " (a CUDA graph replays fixed shapes)");
      }
      if (to.defined()) to.copy_(from);
    }
  }
  {
    torch::AutoGradMode grad(true);
    replay(pass, params);
  }
  // The graph hands its own tensors back: a parameter's gradient stays valid until the next
  // replay rewrites it, which is after the optimizer has used it.
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (grads_[i].defined()) params[i].mutable_grad() = grads_[i];
  }
  return loss_.clone();  // the caller keeps it past the next replay
}

void StepGraph::record(const Pass& pass, const std::vector<torch::Tensor>& params) {
  clear_grads(params);  // recorded as written, not added to
  if (mode_ == Mode::kEmulated) {
    loss_ = pass(inputs_);
    for (const auto& p : params) grads_.push_back(p.grad());
    return;
  }
#if defined(SDXL_TORCH_CUDA)
  const torch::Device device = inputs_.latents.device();
  if (!device.is_cuda()) {
    throw UsageError("train.cuda_graphs: the batch is on " + device.str() + "; CUDA graphs need a CUDA device");
  }
  const c10::cuda::CUDAGuard on_device(device);
  // Whatever is still queued (the previous steps, their collectives) finishes first, and the
  // eager steps' cached blocks go back: the graph keeps a memory pool of its own.
  torch::cuda::synchronize();
  c10::cuda::CUDACachingAllocator::emptyCache();
  cuda_ = std::make_unique<Cuda>(device.index());
  const c10::cuda::CUDAStream current = c10::cuda::getCurrentCUDAStream(device.index());
  try {
    const c10::cuda::CUDAStreamGuard on_stream(cuda_->stream);
    (void)pass(inputs_);  // warm-up: lazy initialisation must not happen while recording
    clear_grads(params);
    // The warm-up's activations are cached blocks of the eager pool now; returned, the
    // recording's own pool can take their place (at batch 16 on an H200 both would not fit).
    torch::cuda::synchronize();
    c10::cuda::CUDACachingAllocator::emptyCache();
    cuda_->graph.capture_begin();
    try {
      loss_ = pass(inputs_);
    } catch (...) {
      try {
        cuda_->graph.capture_end();
      } catch (...) {  // the recording is already broken; the pass's error says why
      }
      throw;
    }
    cuda_->graph.capture_end();
    for (const auto& p : params) grads_.push_back(p.grad());
  } catch (const c10::Error& e) {
    throw Error("train.cuda_graphs: recording the training step as a CUDA graph failed: " +
                    std::string(e.what_without_backtrace()),
                "set train.cuda_graphs = false (the step then runs eagerly, with the same results)");
  }
  // Replays run on the step's own stream, ordered with its eager work; the recording stream's
  // work (the warm-up) finishes first.
  at::cuda::CUDAEvent recorded;
  recorded.record(cuda_->stream);
  recorded.block(current);
#endif
}

void StepGraph::replay(const Pass& pass, const std::vector<torch::Tensor>& params) {
  if (mode_ == Mode::kEmulated) {
    // What a replay does, spelled out: the same pass on the recorded inputs, its results
    // written into the recorded tensors.
    clear_grads(params);
    const torch::Tensor loss = pass(inputs_);
    torch::NoGradGuard no_grad;
    loss_.copy_(loss);
    for (std::size_t i = 0; i < params.size(); ++i) {
      if (grads_[i].defined()) grads_[i].copy_(params[i].grad());
    }
    return;
  }
#if defined(SDXL_TORCH_CUDA)
  (void)pass;
  (void)params;
  try {
    cuda_->graph.replay();
  } catch (const c10::Error& e) {
    throw Error("train.cuda_graphs: replaying the training step's CUDA graph failed: " +
                    std::string(e.what_without_backtrace()),
                "set train.cuda_graphs = false");
  }
#endif
}

}  // namespace sdxl::train
