// AdamW with decoupled weight decay, exactly PyTorch's single-tensor `torch.optim.AdamW`
// (what diffusers' DreamBooth script uses). Its state (step count, first and second moments)
// is plain tensors so checkpoints can save and restore it bit for bit.
#pragma once

#include <torch/torch.h>

#include <vector>

namespace sdxl::train {

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 1e-4;
};

class AdamW {
 public:
  AdamW(std::vector<torch::Tensor> params, AdamWOptions options);

  // One update with learning rate `lr` from the parameters' current .grad (parameters
  // without a gradient are left alone, as PyTorch does).
  void step(double lr);
  void zero_grad();

  const std::vector<torch::Tensor>& params() const { return params_; }
  const AdamWOptions& options() const { return options_; }
  std::int64_t steps_taken() const { return step_; }
  std::vector<torch::Tensor>& exp_avg() { return exp_avg_; }
  std::vector<torch::Tensor>& exp_avg_sq() { return exp_avg_sq_; }
  // For resume: the step count that goes with restored moments.
  void set_steps_taken(std::int64_t steps) { step_ = steps; }

 private:
  std::vector<torch::Tensor> params_, exp_avg_, exp_avg_sq_;
  AdamWOptions options_;
  std::int64_t step_ = 0;
};

}  // namespace sdxl::train
