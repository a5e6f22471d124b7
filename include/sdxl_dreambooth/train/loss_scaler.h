// Dynamic loss scaling for float16 training (torch.cuda.amp.GradScaler's policy): the loss
// is multiplied by a large scale so small fp16 gradients do not flush to zero; before
// clipping, gradients are divided back. A step whose gradients hold inf/NaN is skipped and
// the scale halves; after `growth_interval` good steps it doubles.
#pragma once

#include <torch/torch.h>

#include <vector>

namespace sdxl::train {

class DynamicLossScaler {
 public:
  explicit DynamicLossScaler(bool enabled, double initial_scale = 65536.0, std::int64_t growth_interval = 2000);

  bool enabled() const { return enabled_; }
  double scale() const { return scale_; }
  torch::Tensor scale_loss(const torch::Tensor& loss) const { return enabled_ ? loss * scale_ : loss; }
  // Divides a flat gradient (gradient_sync.h) by the scale, in place. Whether they are finite is read from their total
  // norm (one device sync), which clipping computes anyway.
  void unscale_flat(torch::Tensor& flat_grad) const;
  // After a step: grow, or back off when the gradients were not finite. Returns the new scale.
  double update(bool grads_finite);

  std::int64_t good_steps() const { return good_steps_; }
  void restore(double scale, std::int64_t good_steps) {
    scale_ = scale;
    good_steps_ = good_steps;
  }

 private:
  bool enabled_;
  double scale_;
  std::int64_t growth_interval_;
  std::int64_t good_steps_ = 0;
};

}  // namespace sdxl::train
