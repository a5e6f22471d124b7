// Strict loading of a WeightSource into a LibTorch module whose registered names are the
// checkpoint keys: every missing, unexpected and mis-shaped key is reported in one error.
#pragma once

#include "sdxl_dreambooth/model/weight_source.h"

#include <torch/torch.h>

#include <set>
#include <string>
#include <vector>

namespace sdxl::model {

struct LoadOptions {
  // Keys a checkpoint may carry that the module does not have (buffers older
  // checkpoints store, e.g. text_model.embeddings.position_ids).
  std::set<std::string> tolerated_extra_keys{"text_model.embeddings.position_ids"};
};

struct LoadReport {
  std::size_t loaded = 0;
  std::vector<std::string> ignored;  // tolerated extra keys that were present
  std::uint64_t bytes = 0;
};

// Copies every parameter and buffer of `module` from `source` (converting dtype and device
// to the module's). `what` names the component in errors ("unet", "vae", ...).
LoadReport load_state_dict(torch::nn::Module& module, const WeightSource& source, const std::string& what,
                           const LoadOptions& options = {});

}  // namespace sdxl::model
