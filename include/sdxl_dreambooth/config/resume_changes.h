// What a resumed run changed against the run that wrote its checkpoint: the settings that shape
// a training step (data, prior, LoRA, training, optimizer). Where outputs go, logging,
// validation, the time limit (train.max_steps, train.epochs), the device, the seed (the
// checkpoint's is used) and the base model's path (its weights are checked by fingerprint)
// may change freely.
#pragma once

#include "sdxl_dreambooth/config/run_config.h"

#include <string>
#include <vector>

namespace sdxl::config {

// One entry per changed key, "key (was → now)", in schema order; [[data.subsets]] tables by
// place ("data.subsets[1].resolution (64 → 32)", or their count when it changed).
std::vector<std::string> resume_changes(const RunConfig& was, const RunConfig& now);

}  // namespace sdxl::config
