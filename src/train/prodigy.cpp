#include "sdxl_dreambooth/train/prodigy.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/train/flat_parameters.h"

#include <algorithm>
#include <cmath>

namespace sdxl::train {

Prodigy::Prodigy(std::vector<ParamGroup> groups, ProdigyOptions options)
    : groups_(std::move(groups)), options_(options), d_(options.d0), d_max_(options.d0) {
  std::vector<torch::Tensor> all;
  for (const auto& g : groups_) all.insert(all.end(), g.params.begin(), g.params.end());
  flat_params_ = flatten_parameters(all);
  if (!flat_params_.defined()) {
    throw Error("internal: Prodigy needs parameters of one dtype on one device");
  }
  torch::NoGradGuard no_grad;
  exp_avg_ = torch::zeros_like(flat_params_);
  exp_avg_sq_ = torch::zeros_like(flat_params_);
  s_ = torch::zeros_like(flat_params_);
  p0_ = flat_params_.clone();
}

const std::vector<std::string>& Prodigy::state_names() const {
  static const std::vector<std::string> names{"exp_avg", "exp_avg_sq", "s", "p0"};
  return names;
}

torch::Tensor Prodigy::state(std::size_t group, std::size_t param, std::size_t name) {
  std::int64_t offset = 0;
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    for (std::size_t i = 0; i < groups_[g].params.size(); ++i) {
      const torch::Tensor& p = groups_[g].params[i];
      if (g == group && i == param) {
        const torch::Tensor* flat[] = {&exp_avg_, &exp_avg_sq_, &s_, &p0_};
        return flat[name]->narrow(0, offset, p.numel()).view(p.sizes());
      }
      offset += p.numel();
    }
  }
  throw Error("internal: Prodigy has no parameter " + std::to_string(param) + " in group " + std::to_string(group));
}

std::map<std::string, double> Prodigy::scalars() const {
  return {{"d", d_}, {"d_max", d_max_}, {"d_numerator", d_numerator_}};
}

void Prodigy::set_scalars(const std::map<std::string, double>& values) {
  d_ = values.at("d");
  d_max_ = values.at("d_max");
  d_numerator_ = values.at("d_numerator");
}

std::vector<Prodigy::Chunk> Prodigy::chunks(const std::vector<bool>& has_grad) const {
  std::vector<Chunk> out;
  std::int64_t offset = 0;
  std::size_t index = 0;
  for (const auto& g : groups_) {
    const std::size_t first = index;
    std::int64_t numel = 0;
    bool all = true;
    for (const auto& p : g.params) {
      all = all && has_grad.at(index++);
      numel += p.numel();
    }
    if (all) {
      if (numel > 0) out.push_back({offset, numel, g.weight_decay});
    } else {
      std::int64_t at = offset;
      for (std::size_t i = 0; i < g.params.size(); ++i) {
        if (has_grad[first + i]) out.push_back({at, g.params[i].numel(), g.weight_decay});
        at += g.params[i].numel();
      }
    }
    offset += numel;
  }
  return out;
}

void Prodigy::step(double lr, const torch::Tensor& flat_grad, const std::vector<bool>& has_grad) {
  if (flat_grad.numel() != flat_params_.numel()) {
    throw Error("internal: Prodigy got a flat gradient of " + std::to_string(flat_grad.numel()) + " values for " +
                std::to_string(flat_params_.numel()));
  }
  if (!groups_.front().params.front().is_alias_of(flat_params_)) {
    throw Error("internal: Prodigy's parameters were moved after it was built");
  }
  torch::NoGradGuard no_grad;
  // ref: prodigyopt 1.1.2 Prodigy.step, line for line over chunks instead of tensors.
  const ProdigyOptions& o = options_;
  const double beta3 = o.beta3.value_or(std::sqrt(o.beta2));
  const double k = static_cast<double>(k_);
  const double bias_correction =
      o.use_bias_correction ? std::sqrt(1.0 - std::pow(o.beta2, k + 1)) / (1.0 - std::pow(o.beta1, k + 1)) : 1.0;
  const double dlr = d_ * lr * bias_correction;
  const double d0 = o.d0;
  const double d = d_;
  const torch::Tensor grad_all = flat_grad.to(flat_params_.device(), flat_params_.scalar_type());
  const std::vector<Chunk> parts = chunks(has_grad);

  const double d_numerator = d_numerator_ * beta3;  // kept only when the step happens
  double delta_numerator = 0.0, d_denom = 0.0;
  std::vector<torch::Tensor> grads;
  for (const Chunk& c : parts) {
    torch::Tensor p = flat_params_.narrow(0, c.offset, c.numel);
    torch::Tensor g = grad_all.narrow(0, c.offset, c.numel);
    if (c.weight_decay != 0 && !o.decouple) g = g + c.weight_decay * p;
    grads.push_back(g);
    if (lr <= 0.0) continue;
    delta_numerator += (d / d0) * dlr * torch::dot(g, p0_.narrow(0, c.offset, c.numel) - p).item<double>();
    if (o.beta1 > 0) exp_avg_.narrow(0, c.offset, c.numel).mul_(o.beta1).add_(g, d * (1 - o.beta1));
    exp_avg_sq_.narrow(0, c.offset, c.numel).mul_(o.beta2).addcmul_(g, g, d * d * (1 - o.beta2));
    torch::Tensor s = s_.narrow(0, c.offset, c.numel);
    s.mul_(beta3).add_(g, o.safeguard_warmup ? (d / d0) * d : (d / d0) * dlr);
    d_denom += s.abs().sum().item<double>();
  }
  // No gradient at all (or lr 0): prodigyopt returns before updating anything, k included.
  if (d_denom == 0) return;

  const double global_numerator = d_numerator + delta_numerator;
  const double d_hat = o.d_coef * global_numerator / d_denom;
  double new_d = d;
  if (new_d == d0) new_d = std::max(new_d, d_hat);
  d_max_ = std::max(d_max_, d_hat);
  new_d = std::min(d_max_, new_d * o.growth_rate);
  d_numerator_ = global_numerator;
  d_ = new_d;

  for (std::size_t i = 0; i < parts.size(); ++i) {
    const Chunk& c = parts[i];
    torch::Tensor p = flat_params_.narrow(0, c.offset, c.numel);
    const torch::Tensor denom = exp_avg_sq_.narrow(0, c.offset, c.numel).sqrt().add_(new_d * o.eps);
    if (c.weight_decay != 0 && o.decouple) p.add_(p, -c.weight_decay * dlr);
    if (o.beta1 > 0) {
      p.addcdiv_(exp_avg_.narrow(0, c.offset, c.numel), denom, -dlr);
    } else {
      p.addcdiv_(grads[i], denom, -dlr * new_d);
    }
  }
  ++k_;
}

}  // namespace sdxl::train
