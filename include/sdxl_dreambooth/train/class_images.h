// Prior preservation's class images: diffusers' DreamBooth script generates the missing ones
// with the base model before training, into data.class_dir, so the next run reuses them.
#pragma once

#include "sdxl_dreambooth/config/data_subsets.h"
#include "sdxl_dreambooth/config/run_config.h"
#include "sdxl_dreambooth/dist/host_collectives.h"
#include "sdxl_dreambooth/pipeline/sdxl_pipeline.h"
#include "sdxl_dreambooth/train/preemption.h"
#include "sdxl_dreambooth/train/run_settings.h"
#include "sdxl_dreambooth/util/logger.h"

namespace sdxl::train {

// Brings a subset's class_dir up to its num_class_images images (prior.sample_steps steps of
// validation.scheduler, guidance 5). Whole batches per rank (batch j on rank j mod world),
// each written as soon as it is drawn, so an interrupted run keeps them; images take the first
// free class-NNNNN.png names (rank 0's listing), so no two ranks write the same file, nothing
// of the user's is overwritten and the images do not depend on the rank count. Only files
// whose first bytes are an image count. After each round of batches the ranks agree on `signals`: a stop
// request throws PreemptedBeforeTraining (the images drawn so far are kept).
void ensure_class_images(pipeline::SdxlPipeline& pipe, const config::RunConfig& cfg,
                         const config::ResolvedSubset& subset, std::size_t subset_index, const RunSettings& settings,
                         const Logger& log, dist::HostCollectives& comm, const PreemptionSignals& signals);

}  // namespace sdxl::train
