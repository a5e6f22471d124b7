#include "sdxl_dreambooth/train/adamw.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/train/flat_parameters.h"
#include "sdxl_dreambooth/train/gradient_sync.h"

#include <cmath>

namespace sdxl::train {

AdamW::AdamW(std::vector<torch::Tensor> params, AdamWOptions options)
    : params_(std::move(params)), options_(options) {
  torch::NoGradGuard no_grad;
  for (const auto& p : params_) numel_ += p.numel();
  flat_params_ = flatten_parameters(params_);
  if (flat_params_.defined()) {
    flat_exp_avg_ = torch::zeros_like(flat_params_);
    flat_exp_avg_sq_ = torch::zeros_like(flat_params_);
    exp_avg_ = views_of(flat_exp_avg_, params_);
    exp_avg_sq_ = views_of(flat_exp_avg_sq_, params_);
    return;
  }
  for (const auto& p : params_) {
    exp_avg_.push_back(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    exp_avg_sq_.push_back(torch::zeros_like(p, torch::MemoryFormat::Preserve));
  }
}

bool AdamW::flat() const {
  // Moving a module (module->to()) after construction gives its parameters new storage.
  if (!flat_params_.defined()) return false;
  return params_.front().is_alias_of(flat_params_) && params_.back().is_alias_of(flat_params_);
}

void AdamW::step(double lr) {
  if (params_.empty()) return;
  std::vector<bool> has_grad;
  const torch::Tensor flat = flatten_gradients(params_, params_.front().device(), &has_grad);
  step(lr, flat, has_grad);
}

void AdamW::step(double lr, const torch::Tensor& flat_grad, const std::vector<bool>& has_grad) {
  if (flat_grad.numel() != numel_ || has_grad.size() != params_.size()) {
    throw Error("internal: AdamW got a flat gradient of " + std::to_string(flat_grad.numel()) + " values for " +
                std::to_string(numel_) + " parameter values");
  }
  torch::NoGradGuard no_grad;
  ++step_;
  // ref: torch/optim/adamw.py _single_tensor_adamw (PyTorch 1.13 and 2.x give the same math).
  const double bias_correction1 = 1.0 - std::pow(options_.beta1, static_cast<double>(step_));
  const double bias_correction2 = 1.0 - std::pow(options_.beta2, static_cast<double>(step_));
  const double step_size = lr / bias_correction1;
  const double bias_correction2_sqrt = std::sqrt(bias_correction2);
  auto update = [&](torch::Tensor& p, torch::Tensor& m, torch::Tensor& v, const torch::Tensor& g) {
    p.mul_(1.0 - lr * options_.weight_decay);
    m.mul_(options_.beta1).add_(g, 1.0 - options_.beta1);
    v.mul_(options_.beta2).addcmul_(g, g, 1.0 - options_.beta2);
    const torch::Tensor denom = (v.sqrt() / bias_correction2_sqrt).add_(options_.eps);
    p.addcdiv_(m, denom, -step_size);
  };
  bool all = true;
  for (bool h : has_grad) all = all && h;
  if (all && flat()) {
    update(flat_params_, flat_exp_avg_, flat_exp_avg_sq_,
           flat_grad.to(flat_params_.device(), flat_params_.scalar_type()));
    return;
  }
  std::int64_t offset = 0;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    torch::Tensor& p = params_[i];
    const std::int64_t n = p.numel();
    if (has_grad[i]) {
      const torch::Tensor g = flat_grad.narrow(0, offset, n).view(p.sizes()).to(p.device(), p.scalar_type());
      update(p, exp_avg_[i], exp_avg_sq_[i], g);
    }
    offset += n;
  }
}

void AdamW::zero_grad() {
  for (auto& p : params_) {
    if (p.grad().defined()) p.mutable_grad().reset();
  }
}

AdamWGroups::AdamWGroups(std::vector<ParamGroup> groups, AdamWOptions options) {
  for (auto& g : groups) {
    AdamWOptions o = options;
    o.weight_decay = g.weight_decay;
    groups_.push_back(std::make_unique<AdamW>(std::move(g.params), o));
    lr_scales_.push_back(g.lr_scale);
  }
}

const std::vector<torch::Tensor>& AdamWGroups::params(std::size_t group) const { return groups_.at(group)->params(); }

void AdamWGroups::step(double lr, const torch::Tensor& flat_grad, const std::vector<bool>& has_grad) {
  // Each group steps its slice of the flat gradient (its parameters, in order).
  std::int64_t offset = 0;
  std::size_t first = 0;
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    AdamW& opt = *groups_[g];
    const std::size_t count = opt.params().size();
    const std::vector<bool> mine(has_grad.begin() + static_cast<std::ptrdiff_t>(first),
                                 has_grad.begin() + static_cast<std::ptrdiff_t>(first + count));
    opt.step(lr * lr_scales_[g], flat_grad.narrow(0, offset, opt.numel()), mine);
    offset += opt.numel();
    first += count;
  }
}

const std::vector<std::string>& AdamWGroups::state_names() const {
  static const std::vector<std::string> names{"exp_avg", "exp_avg_sq"};
  return names;
}

torch::Tensor AdamWGroups::state(std::size_t group, std::size_t param, std::size_t name) {
  AdamW& opt = *groups_.at(group);
  return (name == 0 ? opt.exp_avg() : opt.exp_avg_sq()).at(param);
}

}  // namespace sdxl::train
