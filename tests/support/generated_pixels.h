// `generate` on the tiny reference pipeline from e2e tests, and how far two pictures differ.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace sdxl::test {

// Runs `generate --model tiny-sdxl --prompt PROMPT --size 64x64 --steps 3 --seed SEED --out DIR`
// plus `extra` (expects exit 0) and returns the RGB bytes of DIR/0-0-seedSEED.png.
std::vector<std::uint8_t> tiny_generated_pixels(const std::filesystem::path& dir, const std::string& prompt, int seed,
                                                const std::vector<std::string>& extra = {});

// Mean absolute difference of two equally sized RGB byte arrays, in pixel levels.
double mean_abs_pixel_diff(const std::vector<std::uint8_t>& a, const std::vector<std::uint8_t>& b);

// A run's diffusers and kohya LoRA files draw the same "sks cat" (seed 3) merged or applied at
// run time, within rounding, and not the base model's picture, which it returns. Pictures go to
// DIR/base, DIR/merged, DIR/merged-kohya and DIR/runtime.
std::vector<std::uint8_t> expect_files_draw_alike(const std::filesystem::path& dir, const std::string& diffusers_file,
                                                  const std::string& kohya_file);

}  // namespace sdxl::test
