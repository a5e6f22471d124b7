// The optimizer of a run: groups of trained tensors (the UNet's adapters, then each text
// encoder's) stepped together from one flat gradient. AdamW (per group its own learning-rate
// share and weight decay) or Prodigy (one step-size estimate for all groups). Its state is named
// tensors per parameter plus named scalars, which checkpoints save and resume restores bit for
// bit (training_checkpoint.h).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace sdxl::train {

struct ParamGroup {
  std::vector<torch::Tensor> params;
  double lr_scale = 1.0;      // of the schedule's learning rate (text encoders: text_encoder_lr / learning_rate)
  double weight_decay = 0.0;  // decoupled
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;

  // The checkpoint's /optimizer type: "AdamW" or "Prodigy".
  virtual std::string kind() const = 0;
  virtual std::size_t num_groups() const = 0;
  virtual const std::vector<torch::Tensor>& params(std::size_t group) const = 0;
  // One update from the float32 gradient of every group's parameters, concatenated in order
  // (gradient_sync.h's flatten_gradients) at the schedule's learning rate `lr`; has_grad[i]
  // false leaves parameter i alone, as PyTorch leaves a parameter without .grad.
  virtual void step(double lr, const torch::Tensor& flat_grad, const std::vector<bool>& has_grad) = 0;
  void zero_grad();

  // Per-parameter state, the same names for every parameter ("exp_avg", "exp_avg_sq", ...).
  virtual const std::vector<std::string>& state_names() const = 0;
  // The `name`-th state tensor of parameter `param` of `group`: a live view to read or restore.
  virtual torch::Tensor state(std::size_t group, std::size_t param, std::size_t name) = 0;
  // The group's update count (AdamW's bias correction; Prodigy's k).
  virtual std::int64_t steps_taken(std::size_t group) const = 0;
  virtual void set_steps_taken(std::size_t group, std::int64_t steps) = 0;
  // Scalars of the whole optimizer beyond the step counts (Prodigy: d, d_max, d_numerator).
  virtual std::map<std::string, double> scalars() const { return {}; }
  virtual void set_scalars(const std::map<std::string, double>& /*values*/) {}
  // The learning rate the update actually moves by, for logs (Prodigy: d · lr); `lr` otherwise.
  virtual double effective_lr(double lr) const { return lr; }
};

}  // namespace sdxl::train
