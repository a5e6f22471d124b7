#include "support/generated_pixels.h"

#include "sdxl_dreambooth/io/png_writer.h"
#include "support/process.h"
#include "support/reference.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>

namespace sdxl::test {

std::vector<std::uint8_t> tiny_generated_pixels(const std::filesystem::path& dir, const std::string& prompt, int seed,
                                                const std::vector<std::string>& extra) {
  std::vector<std::string> args{"generate", "--model", (reference_dir() / "tiny-sdxl").string(),
                                "--prompt", prompt,    "--size",
                                "64x64",    "--steps", "3",
                                "--seed",   std::to_string(seed), "--out",
                                dir.string()};
  args.insert(args.end(), extra.begin(), extra.end());
  const auto g = run_cli(args);
  EXPECT_EQ(g.exit_code, 0) << g.err;
  return io::read_png((dir / ("0-0-seed" + std::to_string(seed) + ".png")).string()).rgb;
}

double mean_abs_pixel_diff(const std::vector<std::uint8_t>& a, const std::vector<std::uint8_t>& b) {
  EXPECT_EQ(a.size(), b.size());
  double s = 0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) s += std::abs(int(a[i]) - int(b[i]));
  return s / static_cast<double>(std::max<std::size_t>(a.size(), 1));
}

std::vector<std::uint8_t> expect_files_draw_alike(const std::filesystem::path& dir, const std::string& diffusers_file,
                                                  const std::string& kohya_file) {
  const auto base = tiny_generated_pixels(dir / "base", "sks cat", 3);
  const auto merged = tiny_generated_pixels(dir / "merged", "sks cat", 3, {"--lora", diffusers_file});
  const auto merged_kohya = tiny_generated_pixels(dir / "merged-kohya", "sks cat", 3, {"--lora", kohya_file});
  const auto runtime =
      tiny_generated_pixels(dir / "runtime", "sks cat", 3, {"--lora", kohya_file, "--lora-mode", "runtime"});
  EXPECT_GT(mean_abs_pixel_diff(base, merged), 0.5);
  EXPECT_LT(mean_abs_pixel_diff(merged, merged_kohya), 0.05);
  EXPECT_LT(mean_abs_pixel_diff(merged, runtime), 0.05);
  return base;
}

}  // namespace sdxl::test
