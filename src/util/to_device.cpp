#include "sdxl_dreambooth/util/to_device.h"

namespace sdxl::util {

torch::Tensor to_device_async(const torch::Tensor& host, const torch::Device& device) {
  if (!device.is_cuda() || !host.device().is_cpu()) return host.to(device);
  // pin_memory() copies into a page-locked block; that host-side memcpy is all the host waits for.
  return host.pin_memory().to(device, /*non_blocking=*/true);
}

}  // namespace sdxl::util
