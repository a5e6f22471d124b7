// data.bucketing end to end on 2 ranks: landscape images on one rank and portrait ones on the
// other (files are dealt round-robin), each bucket smaller than a global batch; every step
// trains one bucket on both ranks, the log shows the bucket table, and a preempted run resumes
// to the same LoRA bits; with prior preservation the class images join as their own bucket.
#include "sdxl_dreambooth/io/png_writer.h"
#include "sdxl_dreambooth/io/safetensors.h"
#include "support/process.h"
#include "support/reference.h"

#include <gtest/gtest.h>

#include <sstream>

using namespace sdxl;
namespace fs = std::filesystem;

namespace {

// A smooth pattern that differs per image, width x height.
void write_image(const fs::path& path, int width, int height, int seed) {
  std::vector<std::uint8_t> px(static_cast<std::size_t>(width) * height * 3);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (int c = 0; c < 3; ++c) {
        px[(static_cast<std::size_t>(y) * width + x) * 3 + c] =
            static_cast<std::uint8_t>((x * (c + 1) * 3 + y * (seed + 2) * 2 + seed * 40) % 256);
      }
    }
  }
  io::write_png(path.string(), px.data(), width, height);
}

std::string bucket_config(const fs::path& images, const fs::path& out) {
  std::ostringstream s;
  s << "[model]\npretrained = \"" << (test::reference_dir() / "tiny-sdxl").string() << "\"\n"
    << "[data]\ninstance_dir = \"" << images.string() << "\"\ninstance_prompt = \"a photo of sks pattern\"\n"
    << "resolution = 64\ncenter_crop = true\nbucketing = true\nbucket_step = 16\n"
    << "[train]\nseed = 0\nlearning_rate = 1e-3\nbatch_size = 2\nmax_steps = 6\n"
    << "[checkpoint]\nevery_steps = 2\n"
    << "[logging]\ntensorboard = false\n"
    << "[output]\ndir = \"" << out.string() << "\"\n";
  return s.str();
}

}  // namespace

TEST(BucketTraining, TwoRanksTrainOneBucketPerStepAndResumeExactly) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  // a0, a2, a4 (rank 0's share) are landscape 96x64; a1, a3, a5 (rank 1's) portrait 64x96.
  fs::create_directories(dir / "images");
  for (int i = 0; i < 6; ++i) {
    write_image(dir / "images" / ("a" + std::to_string(i) + ".png"), i % 2 ? 64 : 96, i % 2 ? 96 : 64, i);
  }
  test::write_file(dir / "straight.toml", bucket_config(dir / "images", dir / "out"));
  test::write_file(dir / "stopped.toml", bucket_config(dir / "images", dir / "out2"));
  const auto straight = test::run_mpirun(2, {"train", (dir / "straight.toml").string()});
  ASSERT_EQ(straight.exit_code, 0) << straight.err;
  for (const char* line : {"data.bucketing: 11 buckets of about 64^2 px, sides 16 to 128 in steps of 16",
                           "6 examples encoded in 2 buckets by 2 ranks",
                           "bucket 48x80: 3 examples, 1 global batch per epoch (filled up by repeating its examples)",
                           "bucket 80x48: 3 examples, 1 global batch per epoch (filled up by repeating its examples)",
                           "training 6 steps: 6 examples, batch 2 x 1 accumulation, 2 steps per epoch"}) {
    EXPECT_NE(straight.err.find(line), std::string::npos) << line << "\n" << straight.err;
  }
  // kohya's metadata has the buckets (A1111 shows them).
  const auto kohya = io::SafetensorsFile::open((dir / "out" / "out.safetensors").string());
  EXPECT_EQ(kohya->metadata().at("ss_enable_bucket"), "True");
  EXPECT_EQ(kohya->metadata().at("ss_bucket_info"),
            R"({"buckets":{"0":{"count":3,"resolution":[48,80]},"1":{"count":3,"resolution":[80,48]}}})");
  // Preempted during step 3, resumed from checkpoint 2: the same bits.
  const auto [stopped, resumed] = test::preempt_and_resume(dir / "stopped.toml", 3, 2);
  ASSERT_EQ(stopped.exit_code, 75) << stopped.err;
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(test::read_file(dir / "out" / "pytorch_lora_weights.safetensors"),
            test::read_file(dir / "out2" / "pytorch_lora_weights.safetensors"));
  EXPECT_EQ(test::read_file(dir / "out" / "metrics.csv").substr(0, 40),
            test::read_file(dir / "out2" / "metrics.csv").substr(0, 40));

  // What bucketing cannot be combined with is refused before anything runs.
  const auto graphs = test::run_cli({"train", (dir / "straight.toml").string(), "--set", "train.cuda_graphs=true"});
  EXPECT_EQ(graphs.exit_code, 2) << graphs.err;
  EXPECT_NE(graphs.err.find("data.bucketing = true changes the latent size from step to step, which a captured CUDA "
                            "graph"), std::string::npos)
      << graphs.err;
  const auto step = test::run_cli({"train", (dir / "straight.toml").string(), "--set", "data.bucket_step=20"});
  EXPECT_EQ(step.exit_code, 2) << step.err;
  EXPECT_NE(step.err.find("data.bucket_step: expected a multiple of 8"), std::string::npos) << step.err;
  const auto max = test::run_cli({"train", (dir / "straight.toml").string(), "--set", "data.max_bucket_resolution=48"});
  EXPECT_EQ(max.exit_code, 2) << max.err;
  EXPECT_NE(max.err.find("data.max_bucket_resolution = 48 is below data.resolution = 64"), std::string::npos)
      << max.err;
}

// Prior preservation with buckets (kohya's regularization images): the square class images
// form their own bucket beside the instance buckets, as many class as instance examples; the
// steps of a bucket draw from it alone and a preempted run resumes to the same bits.
TEST(BucketTraining, ClassImagesTrainInTheirOwnBucketWithPriorPreservation) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  fs::create_directories(dir / "images");
  fs::create_directories(dir / "class");
  for (int i = 0; i < 6; ++i) {
    write_image(dir / "images" / ("a" + std::to_string(i) + ".png"), i % 2 ? 64 : 96, i % 2 ? 96 : 64, i);
  }
  for (int i = 0; i < 4; ++i) write_image(dir / "class" / ("c" + std::to_string(i) + ".png"), 64, 64, 10 + i);
  const auto config = [&](const fs::path& out) {
    return bucket_config(dir / "images", out) + "[prior]\nenabled = true\n";
  };
  const std::string class_keys = "class_dir = \"" + (dir / "class").string() +
                                 "\"\nclass_prompt = \"a pattern\"\nnum_class_images = 4\n";
  const auto with_class = [&](std::string toml) {
    return toml.insert(toml.find("resolution = 64"), class_keys);
  };
  test::write_file(dir / "straight.toml", with_class(config(dir / "out")));
  test::write_file(dir / "stopped.toml", with_class(config(dir / "out2")));
  const auto straight = test::run_mpirun(2, {"train", (dir / "straight.toml").string()});
  ASSERT_EQ(straight.exit_code, 0) << straight.err;
  for (const char* line :
       {"bucket 48x80: 3 examples (3 instance, 0 class), 1 global batch per epoch (filled up by repeating its examples)",
        "bucket 80x48: 3 examples (3 instance, 0 class), 1 global batch per epoch (filled up by repeating its examples)",
        "bucket 64x64: 6 examples (0 instance, 6 class), 1 global batch per epoch (filled up by repeating its examples)",
        "training 6 steps: 12 examples, batch 4 (instance and class examples mixed) x 1 accumulation, 3 steps per "
        "epoch"}) {
    EXPECT_NE(straight.err.find(line), std::string::npos) << line << "\n" << straight.err;
  }
  EXPECT_EQ(straight.err.find("generating"), std::string::npos) << straight.err;  // the folder had enough
  // 6 steps of 2 ranks x 4 rows, every row an example of the epoch's 12.
  const auto inspected = test::run_cli({"inspect", (dir / "out" / "checkpoints" / "checkpoint-6.h5").string()});
  ASSERT_EQ(inspected.exit_code, 0) << inspected.err;
  EXPECT_NE(inspected.out.find("48 examples seen"), std::string::npos) << inspected.out;
  const auto [stopped, resumed] = test::preempt_and_resume(dir / "stopped.toml", 3, 2);
  ASSERT_EQ(stopped.exit_code, 75) << stopped.err;
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(test::read_file(dir / "out" / "pytorch_lora_weights.safetensors"),
            test::read_file(dir / "out2" / "pytorch_lora_weights.safetensors"));
}
