// OUTPUT/samples/progress.png: every validation so far in one picture, a row per validation
// step (captioned "step N"), a column per (prompt, image), labelled with the prompt; rewritten
// by rank 0 after each validation from the PNGs under samples/step_N/. The next checkpoint
// also stores it (/samples/progress, an HDF5 IMAGE).
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <string>
#include <vector>

namespace sdxl::train {

// `prompts`: validation.prompts, for the column labels. Rows whose images have another size
// than the newest step's (a resumed run with another validation.resolution) are left out.
// Returns the grid's pixels as [H, W, 3] uint8 (undefined when there are no validation images).
torch::Tensor write_progress_grid(const std::filesystem::path& samples_dir, const std::vector<std::string>& prompts);

}  // namespace sdxl::train
