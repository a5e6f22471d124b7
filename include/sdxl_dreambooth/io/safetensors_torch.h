// safetensors <-> LibTorch: tensors from a validated file (zero-copy when possible) and
// the writer used for LoRA export.
#pragma once

#include "sdxl_dreambooth/io/safetensors.h"

#include <torch/torch.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace sdxl::io {

torch::Dtype to_torch_dtype(DType dtype);
DType from_torch_dtype(torch::Dtype dtype);

// A CPU tensor over the mapped bytes, sharing ownership of the file: no copy when the data
// is suitably aligned, one copy otherwise. The memory is read-only; callers that modify a
// tensor must clone it (loading into modules copies into the parameters anyway).
torch::Tensor tensor_view(const std::shared_ptr<const SafetensorsFile>& file, const TensorInfo& info);

// Writes tensors (in the given order) and string metadata to `path` via `path.tmp` and
// a rename, so an interrupted write never leaves a partial file under the final name.
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace sdxl::io
