// train.cuda_graphs: a micro-batch's forward and backward pass recorded once as a CUDA graph and
// replayed on every later step, so the host launches one graph instead of thousands of kernels
// (at batch 1 on an H200 the GPU was busy 16 % of the step: docs/benchmarks.md). Shapes are
// fixed for a run (one resolution, one batch size), which is what a graph needs. The batch is
// copied into the recorded input tensors before each replay; the replay writes the recorded
// gradients, which are handed back to the parameters, and the recorded loss.
//
// The rest of the step (all-reduce, clipping, AdamW) stays eager: a few dozen kernels on one
// flat buffer, and the all-reduce is a collective the graph must not contain.
#pragma once

#include "sdxl_dreambooth/train/diffusion_loss.h"

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <vector>

namespace sdxl::train {

class StepGraph {
 public:
  enum class Mode {
    kCuda,      // a CUDA graph (CUDA LibTorch)
    kEmulated,  // replays by running the pass again into the recorded tensors: the same
                // bookkeeping on any device, for tests without a GPU
  };
  // What the graph records: forward, loss and backward of one micro-batch; returns the
  // (detached, float32) loss it adds to the step's.
  using Pass = std::function<torch::Tensor(const DiffusionBatch&)>;

  explicit StepGraph(Mode mode);
  ~StepGraph();
  StepGraph(const StepGraph&) = delete;
  StepGraph& operator=(const StepGraph&) = delete;

  // Runs `pass` on `batch`. The first call records it (after one eager warm-up pass on the
  // recording stream, as CUDA graphs need); every call then replays it. Afterwards each of
  // `params` has this pass's gradient (replacing what it had: a replay does not add to it), and
  // the returned loss is the caller's own. The same params and batch shapes on every call,
  // else an Error.
  torch::Tensor run(const DiffusionBatch& batch, const Pass& pass, const std::vector<torch::Tensor>& params);

  bool recorded() const { return recorded_; }

 private:
  struct Cuda;  // the CUDA graph and its stream (CUDA LibTorch only)

  void record(const Pass& pass, const std::vector<torch::Tensor>& params);
  void replay(const Pass& pass, const std::vector<torch::Tensor>& params);

  Mode mode_;
  bool recorded_ = false;
  DiffusionBatch inputs_;              // the tensors the graph reads
  torch::Tensor loss_;                 // the tensor it writes the loss to
  std::vector<torch::Tensor> grads_;   // and the gradients (undefined: a parameter without one)
  std::unique_ptr<Cuda> cuda_;
};

}  // namespace sdxl::train
