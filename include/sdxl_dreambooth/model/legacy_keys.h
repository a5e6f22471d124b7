// The one place where checkpoint keys are translated: VAE checkpoints written before
// diffusers 0.14 name the mid-block attention query/key/value/proj_attn and store its
// projections as 1x1 convolutions.
// ref: diffusers/models/modeling_utils.py _convert_deprecated_attention_blocks
#pragma once

#include <torch/torch.h>

#include <string>

namespace sdxl::model {

// "encoder.mid_block.attentions.0.query.weight" -> "encoder.mid_block.attentions.0.to_q.weight";
// any other key unchanged.
std::string canonical_key(const std::string& key);

// A legacy 1x1-conv weight [out, in, 1, 1] reshaped to the linear weight [out, in] the
// module expects; any other tensor unchanged.
torch::Tensor adapt_legacy_tensor(const torch::Tensor& stored, at::IntArrayRef expected_shape);

}  // namespace sdxl::model
