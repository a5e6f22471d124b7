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

}  // namespace sdxl::test
