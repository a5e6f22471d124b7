#include "sdxl_dreambooth/train/optimizer.h"

namespace sdxl::train {

void Optimizer::zero_grad() {
  for (std::size_t g = 0; g < num_groups(); ++g) {
    for (const auto& p : params(g)) {
      if (p.grad().defined()) {
        torch::Tensor param = p;
        param.mutable_grad().reset();
      }
    }
  }
}

}  // namespace sdxl::train
