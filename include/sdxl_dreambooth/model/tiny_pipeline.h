// A complete, tiny, randomly initialised SDXL pipeline in the diffusers folder layout: the same
// block types and key names as stabilityai/stable-diffusion-xl-base-1.0 at a few MB, and a
// byte-level CLIP tokenizer this program generates itself (256 byte symbols, their
// end-of-word forms and the two special tokens; no merges). The built-in default model of the
// quickstart and of tests that must run on a user's clone without the reference data.
#pragma once

#include <cstdint>
#include <filesystem>

namespace sdxl::model {

// Writes the pipeline into `dir` (created; must not already hold a model_index.json).
// Deterministic for a given `seed` and LibTorch version.
void write_tiny_pipeline(const std::filesystem::path& dir, std::uint64_t seed);

}  // namespace sdxl::model
