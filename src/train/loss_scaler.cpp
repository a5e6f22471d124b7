#include "sdxl_dreambooth/train/loss_scaler.h"

namespace sdxl::train {

DynamicLossScaler::DynamicLossScaler(bool enabled, double initial_scale, std::int64_t growth_interval)
    : enabled_(enabled), scale_(enabled ? initial_scale : 1.0), growth_interval_(growth_interval) {}

void DynamicLossScaler::unscale_flat(torch::Tensor& flat_grad) const {
  if (!enabled_) return;
  torch::NoGradGuard no_grad;
  flat_grad.mul_(1.0 / scale_);
}

double DynamicLossScaler::update(bool grads_finite) {
  if (!enabled_) return scale_;
  if (!grads_finite) {
    scale_ *= 0.5;
    good_steps_ = 0;
  } else if (++good_steps_ >= growth_interval_) {
    scale_ *= 2.0;
    good_steps_ = 0;
  }
  return scale_;
}

}  // namespace sdxl::train
