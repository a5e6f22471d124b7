// `mpirun -np 2 sdxl-dreambooth train`: synchronized ranks end to end, and failures that end
// the whole job instead of hanging it.
#include "support/process.h"
#include "support/reference.h"

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>

using namespace sdxl;
namespace fs = std::filesystem;

namespace {

std::string config(const fs::path& out, const std::string& extra = "") {
  return "[model]\npretrained = \"" + (test::reference_dir() / "tiny-sdxl").string() + "\"\n" +
         "[data]\ninstance_dir = \"" + (test::subjects_dir() / "chelsea").string() + "\"\n" +
         "instance_prompt = \"a photo of sks cat\"\nresolution = 64\ncenter_crop = true\n" +
         "[train]\nseed = 0\nbatch_size = 1\nlearning_rate = 1e-3\n" + extra + "\n" +
         "[output]\ndir = \"" + out.string() + "\"\n[logging]\nevery_steps = 5\n";
}

}  // namespace

TEST(DistributedTrain, TwoRanksTrainInLockstep) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  test::write_file(dir / "run.toml",
                   config(dir / "out", "max_steps = 20\n") +
                       "[validation]\nprompts = [\"sks cat\", \"sks cat on grass\"]\nevery_steps = 10\n"
                       "num_images = 1\nsteps = 2\n");
  const auto r = test::run_mpirun(2, {"train", (dir / "run.toml").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("2 rank(s) (mpi collectives)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("examples encoded at 64 px by 2 ranks"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("step 20/20"), std::string::npos) << r.err;
  // The weight check runs every logging step and would have ended the run on a mismatch.
  EXPECT_EQ(test::count_lines(dir / "out" / "metrics.csv"), 21u);
  EXPECT_TRUE(fs::exists(dir / "out" / "pytorch_lora_weights.safetensors"));
  // Validation images are split across the ranks and written by rank 0.
  EXPECT_TRUE(fs::exists(dir / "out" / "samples" / "step_10" / "0-0.png"));
  EXPECT_TRUE(fs::exists(dir / "out" / "samples" / "step_10" / "1-0.png"));
}

TEST(DistributedTrain, ARankThatExitsEndsTheJob) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  test::write_file(dir / "run.toml", config(dir / "out", "max_steps = 50\n"));
  const auto start = std::chrono::steady_clock::now();
  const auto r = test::run_mpirun(2, {"train", (dir / "run.toml").string()}, {{"SDXL_TEST_FAULT", "exit:1:3"}});
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("SDXL_TEST_FAULT: exit at step 3"), std::string::npos) << r.err;
  EXPECT_LT(s, 40.0) << "start-up plus at most 10 s after the exit";
  EXPECT_FALSE(fs::exists(dir / "out" / "pytorch_lora_weights.safetensors"));
}

TEST(DistributedTrain, AStalledRankTripsTheDeadline) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  test::write_file(dir / "run.toml", config(dir / "out", "max_steps = 50\n") + "[distributed]\ntimeout_s = 8\n");
  const auto r = test::run_mpirun(2, {"train", (dir / "run.toml").string()}, {{"SDXL_TEST_FAULT", "stall:1:3"}});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("[rank 0/2] collective 'all-reduce of LoRA gradients' at step 3 did not complete within "
                       "distributed.timeout_s = 8 s"),
            std::string::npos)
      << r.err;
}

TEST(DistributedTrain, ABadImageOnOneRankEndsTheJobWithItsName) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  // Sorted: a.jpg goes to rank 0 (fine), b_empty.jpg to rank 1 (0 bytes): only rank 1 fails.
  fs::create_directories(dir / "images");
  fs::copy_file(test::subjects_dir() / "chelsea" / "01.jpg", dir / "images" / "a.jpg");
  test::write_file(dir / "images" / "b_empty.jpg", "");
  test::write_file(dir / "run.toml", config(dir / "out", "max_steps = 2\n"));
  const auto r = test::run_mpirun(2, {"train", (dir / "run.toml").string(), "--set",
                            "data.instance_dir=\"" + (dir / "images").string() + "\""});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("error: [rank 1/2] " + (dir / "images" / "b_empty.jpg").string() + ": file is empty"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(dir / "out" / "pytorch_lora_weights.safetensors"));
}

// Batches of 3 over 2 prompts x 2 images: the first batch crosses the prompts and goes to
// rank 0, the short second one to rank 1.
TEST(DistributedGenerate, RanksSplitTheImagesAndRankZeroWritesTheSameFiles) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  auto args = [&](const fs::path& out) {
    return std::vector<std::string>{"generate", "--model", (test::reference_dir() / "tiny-sdxl").string(),
                                    "--prompt", "a cat", "--prompt", "a dog", "--num-images", "2", "--size",
                                    "64x64", "--steps", "2", "--batch-size", "3", "--out", out.string()};
  };
  const auto one = test::run_cli(args(dir / "one"));
  ASSERT_EQ(one.exit_code, 0) << one.err;
  const auto two = test::run_mpirun(2, args(dir / "two"));
  ASSERT_EQ(two.exit_code, 0) << two.err;
  EXPECT_NE(two.err.find("batches of 3 image(s): 2 UNet batch(es) on 2 rank(s)"), std::string::npos) << two.err;
  std::size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir / "one")) {
    ++files;
    EXPECT_EQ(test::read_file(e.path()), test::read_file(dir / "two" / e.path().filename())) << e.path();
  }
  EXPECT_EQ(files, 4u);
}
