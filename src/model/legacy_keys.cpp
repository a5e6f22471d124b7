#include "sdxl_dreambooth/model/legacy_keys.h"

#include "sdxl_dreambooth/util/strings.h"

#include <cstring>

namespace sdxl::model {

std::string canonical_key(const std::string& key) {
  if (key.find("mid_block.attentions.") == std::string::npos) return key;
  static const std::pair<const char*, const char*> kRenames[] = {
      {".query.", ".to_q."}, {".key.", ".to_k."}, {".value.", ".to_v."}, {".proj_attn.", ".to_out.0."}};
  for (const auto& [old_name, new_name] : kRenames) {
    const auto pos = key.find(old_name);
    if (pos != std::string::npos) return key.substr(0, pos) + new_name + key.substr(pos + std::strlen(old_name));
  }
  return key;
}

torch::Tensor adapt_legacy_tensor(const torch::Tensor& stored, at::IntArrayRef expected_shape) {
  if (stored.dim() == 4 && expected_shape.size() == 2 && stored.size(2) == 1 && stored.size(3) == 1 &&
      stored.size(0) == expected_shape[0] && stored.size(1) == expected_shape[1]) {
    return stored.reshape(expected_shape);
  }
  return stored;
}

}  // namespace sdxl::model
