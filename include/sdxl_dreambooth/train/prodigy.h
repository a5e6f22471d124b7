// Prodigy (Mishchenko & Defazio, 2023): Adam whose step size d·lr is estimated from the
// gradients seen so far, exactly prodigyopt 1.1.2's Prodigy.step as diffusers' DreamBooth script
// uses it (lr ≈ 1). One estimate d spans every group; each group has its own weight decay. The
// parameters are moved into one contiguous buffer (flat_parameters.h) and the state is kept flat,
// so a step is a few element-wise operations and two reductions per group.
#pragma once

#include "sdxl_dreambooth/train/optimizer.h"

#include <torch/torch.h>

#include <limits>
#include <optional>

namespace sdxl::train {

struct ProdigyOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  std::optional<double> beta3;  // unset: sqrt(beta2)
  double eps = 1e-8;
  bool decouple = true;
  bool use_bias_correction = false;
  bool safeguard_warmup = false;
  double d0 = 1e-6;
  double d_coef = 1.0;
  double growth_rate = std::numeric_limits<double>::infinity();
};

class Prodigy : public Optimizer {
 public:
  // lr_scale of the groups is ignored: Prodigy steps every group by d · lr (prodigyopt allows
  // only one lr, which diffusers' script enforces).
  Prodigy(std::vector<ParamGroup> groups, ProdigyOptions options);

  std::string kind() const override { return "Prodigy"; }
  std::size_t num_groups() const override { return groups_.size(); }
  const std::vector<torch::Tensor>& params(std::size_t group) const override { return groups_.at(group).params; }
  void step(double lr, const torch::Tensor& flat_grad, const std::vector<bool>& has_grad) override;
  const std::vector<std::string>& state_names() const override;
  torch::Tensor state(std::size_t group, std::size_t param, std::size_t name) override;
  std::int64_t steps_taken(std::size_t /*group*/) const override { return k_; }
  void set_steps_taken(std::size_t /*group*/, std::int64_t steps) override { k_ = steps; }
  std::map<std::string, double> scalars() const override;
  void set_scalars(const std::map<std::string, double>& values) override;
  double effective_lr(double lr) const override { return d_ * lr; }

  double d() const { return d_; }
  const ProdigyOptions& options() const { return options_; }

 private:
  // A run of parameters updated as one: a whole group when all its parameters have a gradient,
  // else each parameter that has one.
  struct Chunk {
    std::int64_t offset = 0, numel = 0;
    double weight_decay = 0;
  };
  std::vector<Chunk> chunks(const std::vector<bool>& has_grad) const;

  std::vector<ParamGroup> groups_;
  ProdigyOptions options_;
  torch::Tensor flat_params_;
  // Per element: Adam's moments, Prodigy's s and the initial weights p0 (prodigyopt keeps p0 as
  // a scalar 0 for an all-zero tensor; the full copy gives the same dot products).
  torch::Tensor exp_avg_, exp_avg_sq_, s_, p0_;
  double d_, d_max_, d_numerator_ = 0.0;
  std::int64_t k_ = 0;
};

}  // namespace sdxl::train
