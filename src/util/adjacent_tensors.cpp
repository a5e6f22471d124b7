#include "sdxl_dreambooth/util/adjacent_tensors.h"

namespace sdxl::util {

torch::Tensor adjacent_tensors(const std::vector<torch::Tensor>& tensors) {
  if (tensors.empty() || !tensors.front().defined()) return {};
  const torch::Tensor& first = tensors.front();
  std::int64_t offset = first.storage_offset();
  for (const auto& t : tensors) {
    if (!t.defined() || !t.is_contiguous() || !t.is_alias_of(first) || t.storage_offset() != offset ||
        t.scalar_type() != first.scalar_type() || t.device() != first.device()) {
      return {};
    }
    offset += t.numel();
  }
  // detach: a view for reading and writing the values, outside any autograd graph.
  return first.detach().as_strided({offset - first.storage_offset()}, {1}, first.storage_offset());
}

}  // namespace sdxl::util
