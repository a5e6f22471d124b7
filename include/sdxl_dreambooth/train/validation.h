// Validation images during training: when they are due, and drawing them with the adapters
// as they are (validation.*), split across ranks by whole batches and written by rank 0 to
// OUTPUT/samples/step_N/ with their settings in PNG text chunks.
#pragma once

#include "sdxl_dreambooth/config/run_config.h"
#include "sdxl_dreambooth/dist/host_collectives.h"
#include "sdxl_dreambooth/pipeline/sdxl_pipeline.h"
#include "sdxl_dreambooth/train/checkpoint_file.h"
#include "sdxl_dreambooth/train/preemption.h"
#include "sdxl_dreambooth/train/run_settings.h"
#include "sdxl_dreambooth/util/logger.h"

#include <cstdint>
#include <string>
#include <vector>

namespace sdxl::train {

// validation.every_steps, else every validation.every_epochs (default 50) epochs; never
// without validation.prompts.
bool validation_due(const config::ValidationConfig& validation, std::int64_t step, std::int64_t steps_per_epoch);

// Returns the images on rank 0 (for the next checkpoint), nothing elsewhere. `model` names the
// base model in the PNG text. The `last` validation of a run with validation.compare_base
// also draws the base model's images (samples/base/) and OUTPUT/compare.png. A preemption
// request stops the drawing at the next sampler step (a stopped rank's images are left out, the
// others' kept); the training loop then checkpoints at its next step boundary.
// `compared_with_base` tells whether compare.png was drawn.
std::vector<SampleImage> run_validation(pipeline::SdxlPipeline& pipe, const config::ValidationConfig& validation,
                                        const RunSettings& settings, const std::string& model, std::int64_t step,
                                        bool last, const Logger& log, const PreemptionSignals& signals,
                                        dist::HostCollectives& comm, bool* compared_with_base = nullptr);

}  // namespace sdxl::train
