// Collectives of one process without MPI, for unit tests whose binaries do not initialise MPI:
// every call is the identity at world size 1, and each is counted, so a test can check that
// the step issues the calls N ranks issue (the MPI tests run the real ones at 1 and 2 ranks).
#pragma once

#include "sdxl_dreambooth/dist/collectives.h"

#include <memory>

namespace sdxl::test {

std::unique_ptr<dist::Collectives> make_one_rank_collectives(const torch::Device& device);

}  // namespace sdxl::test
