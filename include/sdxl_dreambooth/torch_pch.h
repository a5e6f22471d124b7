// Precompiled header for every translation unit of sdxl_core: torch/torch.h alone
// costs ~30 s of compile time per file on the CI machine.
#pragma once
#include <torch/torch.h>
