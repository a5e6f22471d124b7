// How the images of a generation request are cut into UNet batches and shared by ranks. The
// (prompt, image) list is cut, in order, into consecutive batches of batch_size; batch j goes
// to rank j mod world, whole. An image is therefore drawn in the same batch, at the same
// position, on every rank count, and its pixels do not depend on how many ranks ran.
#pragma once

#include "sdxl_dreambooth/pipeline/activation_memory.h"
#include "sdxl_dreambooth/pipeline/sdxl_pipeline.h"

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace sdxl::pipeline {

using ImageRef = std::pair<std::size_t, std::int64_t>;  // (prompt index, image index within the prompt)

// Every image of the request in (prompt, image) order, cut into batches of request.batch_size
// (the last one may be shorter).
std::vector<std::vector<ImageRef>> plan_batches(const GenerationRequest& request);

// The batches of `rank` (j mod world == rank), concatenated in order: SdxlPipeline::generate
// cuts this list back into the same batches.
std::vector<ImageRef> rank_share(const std::vector<std::vector<ImageRef>>& batches, int rank, int world);

struct BatchSizing {
  std::int64_t batch_size = 1;
  double unet_fixed_bytes = 0;      // per UNet call, whatever the batch
  double unet_bytes_per_image = 0;  // both guidance branches
  double vae_bytes = 0;             // decoding one image
  bool fits = true;                 // one image's UNet pass and its decode fit in the budget

  double unet_bytes(std::int64_t batch) const {
    return unet_fixed_bytes + unet_bytes_per_image * static_cast<double>(batch);
  }
};

// --batch-size auto: the largest batch (up to every image of the request) whose estimated
// UNet activations fit in budget_bytes, from the pipeline's configs, dtypes and device.
BatchSizing size_batches(const SdxlPipeline& pipe, const GenerationRequest& request, double budget_bytes);

}  // namespace sdxl::pipeline
