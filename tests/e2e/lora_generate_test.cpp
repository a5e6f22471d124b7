// `generate --lora`: a LoRA trained by `train` changes the images, merging equals applying at
// run time, and a file that is not a usable LoRA is one clear error.
#include "sdxl_dreambooth/io/png_writer.h"
#include "support/process.h"
#include "support/reference.h"

#include <gtest/gtest.h>

#include <cstdlib>

using namespace sdxl;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> generate_args(const fs::path& out) {
  return {"generate", "--model", (test::reference_dir() / "tiny-sdxl").string(), "--prompt", "sks cat on a sofa",
          "--size", "64x64", "--steps", "4", "--seed", "3", "--out", out.string()};
}

double mean_abs_diff(const fs::path& a, const fs::path& b) {
  const auto x = io::read_png(a.string()), y = io::read_png(b.string());
  EXPECT_EQ(x.rgb.size(), y.rgb.size());
  double s = 0;
  for (std::size_t i = 0; i < x.rgb.size() && i < y.rgb.size(); ++i) s += std::abs(int(x.rgb[i]) - int(y.rgb[i]));
  return s / static_cast<double>(x.rgb.size());
}

}  // namespace

TEST(GenerateLora, TrainedLoraChangesImagesAndMergeEqualsRuntime) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  test::write_file(dir / "run.toml",
                   "[model]\npretrained = \"" + (test::reference_dir() / "tiny-sdxl").string() + "\"\n"
                   "[data]\ninstance_dir = \"" + (test::subjects_dir() / "chelsea").string() + "\"\n"
                   "instance_prompt = \"a photo of sks cat\"\nresolution = 64\ncenter_crop = true\n"
                   "[train]\nseed = 0\nlearning_rate = 1e-2\nbatch_size = 2\nmax_steps = 5\n"
                   "[output]\ndir = \"" + (dir / "out").string() + "\"\n");
  const auto t = test::run_cli({"train", (dir / "run.toml").string()});
  ASSERT_EQ(t.exit_code, 0) << t.err;
  const std::string lora = (dir / "out" / "pytorch_lora_weights.safetensors").string();

  ASSERT_EQ(test::run_cli(generate_args(dir / "base")).exit_code, 0);
  auto merged_args = generate_args(dir / "merged");
  merged_args.insert(merged_args.end(), {"--lora", lora});
  const auto merged = test::run_cli(merged_args);
  ASSERT_EQ(merged.exit_code, 0) << merged.err;
  EXPECT_NE(merged.err.find("224 adapters merged with scale 1.0, 0 unused"), std::string::npos) << merged.err;
  auto runtime_args = generate_args(dir / "runtime");
  runtime_args.insert(runtime_args.end(), {"--lora", lora, "--lora-mode", "runtime"});
  const auto runtime = test::run_cli(runtime_args);
  ASSERT_EQ(runtime.exit_code, 0) << runtime.err;
  auto zero_args = generate_args(dir / "zero");
  zero_args.insert(zero_args.end(), {"--lora", lora, "--lora-scale", "0"});
  ASSERT_EQ(test::run_cli(zero_args).exit_code, 0);

  const std::string name = "0-0-seed3.png";
  EXPECT_GT(mean_abs_diff(dir / "base" / name, dir / "merged" / name), 0.5);
  EXPECT_LT(mean_abs_diff(dir / "merged" / name, dir / "runtime" / name), 0.05);
  EXPECT_EQ(mean_abs_diff(dir / "base" / name, dir / "zero" / name), 0.0);
  // --compare-base: the base column is the plain base model, the LoRA column is the LoRA's image;
  // at scale 0 both columns are the base model.
  auto compare_args = generate_args(dir / "compare");
  compare_args.insert(compare_args.end(), {"--lora", lora, "--compare-base"});
  const auto compare = test::run_cli(compare_args);
  ASSERT_EQ(compare.exit_code, 0) << compare.err;
  EXPECT_EQ(mean_abs_diff(dir / "base" / name, dir / "compare" / "base" / name), 0.0);
  EXPECT_LT(mean_abs_diff(dir / "runtime" / name, dir / "compare" / "lora" / name), 0.05);
  const auto grid = io::read_png((dir / "compare" / "compare.png").string());
  EXPECT_EQ(grid.width, 2 * 64 + 3 * 8);
  // A header band and a caption band per row hold the drawn labels (fonts-dejavu-core).
  const int band = (grid.height - (64 + 2 * 8)) / 2;
  ASSERT_GT(band, 8) << "no label bands: " << compare.err;
  int dark = 0;
  for (int y = 0; y < band; ++y) {
    for (int x = 0; x < grid.width; ++x) dark += grid.rgb[(static_cast<std::size_t>(y) * grid.width + x) * 3] < 128;
  }
  EXPECT_GT(dark, 20) << "the header band has no text";
  bool labelled = false;
  for (const auto& [k, v] : grid.text) labelled |= k == "row 0" && v.find("sks cat on a sofa") != std::string::npos;
  EXPECT_TRUE(labelled);
  auto zero_compare = generate_args(dir / "compare0");
  zero_compare.insert(zero_compare.end(), {"--lora", lora, "--compare-base", "--lora-scale", "0"});
  ASSERT_EQ(test::run_cli(zero_compare).exit_code, 0);
  EXPECT_EQ(mean_abs_diff(dir / "compare0" / "base" / name, dir / "compare0" / "lora" / name), 0.0);
  auto no_lora = generate_args(dir / "x");
  no_lora.push_back("--compare-base");
  EXPECT_EQ(test::run_cli(no_lora).exit_code, 2);

  const auto png = io::read_png((dir / "merged" / name).string());
  bool has_lora_chunk = false;
  for (const auto& [k, v] : png.text) has_lora_chunk |= k == "lora" && v.find(lora) != std::string::npos;
  EXPECT_TRUE(has_lora_chunk);
}

TEST(GenerateLora, UnusableFilesAreOneErrorNamingTheFile) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  // A valid safetensors file whose tensor is not a LoRA.
  const std::string header = R"({"foo.weight":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  bytes += header + std::string(4, '\0');
  test::write_file(dir / "foreign.safetensors", bytes);
  test::write_file(dir / "garbage.safetensors", "not a safetensors file at all");
  for (const char* name : {"foreign.safetensors", "garbage.safetensors", "missing.safetensors"}) {
    auto args = generate_args(dir / "out");
    args.insert(args.end(), {"--lora", (dir / name).string()});
    const auto r = test::run_cli(args);
    // A file that is not a LoRA is a runtime error; one that does not exist, a usage error.
    EXPECT_EQ(r.exit_code, std::string(name) == "missing.safetensors" ? 2 : 1) << name;
    EXPECT_NE(r.err.find((dir / name).string()), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(dir / "out")) << "nothing is written for a bad --lora";
  }
  // A LoRA whose modules this model lacks (kohya's name of conv_in, which no LoRA here trains).
  const std::string stray =
      R"({"lora_unet_input_blocks_0_0.lora_down.weight":{"dtype":"F32","shape":[1,4],"data_offsets":[0,16]},)"
      R"("lora_unet_input_blocks_0_0.lora_up.weight":{"dtype":"F32","shape":[4,1],"data_offsets":[16,32]}})";
  std::string stray_bytes(8, '\0');
  for (int i = 0; i < 8; ++i) stray_bytes[i] = static_cast<char>((stray.size() >> (8 * i)) & 0xff);
  test::write_file(dir / "stray.safetensors", stray_bytes + stray + std::string(32, '\0'));
  auto args = generate_args(dir / "out");
  args.insert(args.end(), {"--lora", (dir / "stray.safetensors").string()});
  const auto r = test::run_cli(args);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("none of its 1 adapters matches a layer of"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(first: 'input_blocks_0_0')"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "out"));

  // Integers where a LoRA has floats: refused by dtype, not converted into garbage weights.
  std::string ints = stray;
  for (std::size_t at = ints.find("F32"); at != std::string::npos; at = ints.find("F32")) ints.replace(at, 3, "I32");
  test::write_file(dir / "ints.safetensors", stray_bytes + ints + std::string(32, '\0'));
  args = generate_args(dir / "out");
  args.insert(args.end(), {"--lora", (dir / "ints.safetensors").string()});
  const auto typed = test::run_cli(args);
  EXPECT_EQ(typed.exit_code, 1);
  EXPECT_NE(typed.err.find("is I32; LoRA weights are floating point"), std::string::npos) << typed.err;
  EXPECT_FALSE(fs::exists(dir / "out"));
}

// Finite weights so large that the picture overflows (1e30 in every adapter): an error naming
// the image, not a black PNG with exit 0.
TEST(GenerateLora, AnImageThatOverflowsIsAnError) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  const std::string module = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q";
  const std::string header = "{\"" + module + ".lora.down.weight\":{\"dtype\":\"F32\",\"shape\":[1,64],"
                             "\"data_offsets\":[0,256]},\"" + module + ".lora.up.weight\":{\"dtype\":\"F32\","
                             "\"shape\":[64,1],\"data_offsets\":[256,512]}}";
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  bytes += header;
  const float huge = 1e30f;
  for (int i = 0; i < 128; ++i) bytes.append(reinterpret_cast<const char*>(&huge), sizeof huge);
  test::write_file(dir / "huge.safetensors", bytes);
  auto args = generate_args(dir / "out");
  args.insert(args.end(), {"--lora", (dir / "huge.safetensors").string()});
  const auto r = test::run_cli(args);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("image 0 of prompt 'sks cat on a sofa' (seed 3) came out as NaN or infinity"), std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(dir / "out")) << "a failed generate leaves no trace, its folder included";
}
