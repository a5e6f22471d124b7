// Loading reference vectors and comparing tensors with the README's tolerances.
#pragma once

#include "sdxl_dreambooth/io/safetensors_torch.h"
#include "sdxl_dreambooth/model/weight_source.h"
#include "support/reference.h"
#include "support/tensors.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace sdxl::test {

inline model::WeightSource vectors(const std::string& name) {
  return model::WeightSource::open_file(reference_dir() / "vectors" / (name + ".safetensors"));
}

inline std::filesystem::path tiny_sdxl() { return reference_dir() / "tiny-sdxl"; }

}  // namespace sdxl::test

