// [[data.subsets]] end to end: two concepts, each with its own folder, prompt, repeats and
// class images (generated per subset), trained in one run that resumes to the same bits; the
// outputs name both concepts; a subset missing what it needs is a configuration error.
#include "sdxl_dreambooth/io/safetensors.h"
#include "support/process.h"
#include "support/reference.h"

#include <gtest/gtest.h>

#include <sstream>

using namespace sdxl;
namespace fs = std::filesystem;

namespace {

std::string subset_q(const fs::path& p) { return "\"" + p.string() + "\""; }

std::string subsets_config(const fs::path& dir, const fs::path& out) {
  std::ostringstream s;
  s << "[model]\npretrained = " << subset_q(test::reference_dir() / "tiny-sdxl") << "\n"
    << "[data]\ninstance_prompt = \"a photo of sks cat\"\nresolution = 64\ncenter_crop = true\n"
    << "class_prompt = \"a photo of a cat\"\nnum_class_images = 2\n"
    << "[prior]\nenabled = true\nsample_steps = 2\n"
    << "[train]\nseed = 0\nbatch_size = 2\nmax_steps = 4\n"
    << "[checkpoint]\nevery_steps = 2\n"
    << "[logging]\ntensorboard = false\n"
    << "[output]\ndir = " << subset_q(out) << "\n"
    << "[[data.subsets]]\ninstance_dir = " << subset_q(dir / "cat") << "\nclass_dir = " << subset_q(dir / "class-cat") << "\n"
    << "[[data.subsets]]\ninstance_dir = " << subset_q(dir / "toy") << "\ninstance_prompt = \"a photo of zwx toy\"\n"
    << "repeats = 2\nclass_dir = " << subset_q(dir / "class-toy") << "\nclass_prompt = \"a photo of a toy\"\n"
    << "num_class_images = 1\n";
  return s.str();
}

}  // namespace

TEST(Subsets, TwoConceptsWithTheirOwnPriorsTrainAndResume) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  const auto chelsea = test::subjects_dir() / "chelsea";
  fs::create_directories(dir / "cat");
  fs::create_directories(dir / "toy");
  fs::create_symlink(chelsea / "01.jpg", dir / "cat" / "01.jpg");
  fs::create_symlink(chelsea / "02.png", dir / "cat" / "02.png");
  fs::create_symlink(chelsea / "03.jpg", dir / "toy" / "03.jpg");
  test::write_file(dir / "straight.toml", subsets_config(dir.path(), dir / "out"));
  test::write_file(dir / "stopped.toml", subsets_config(dir.path(), dir / "out2"));
  const auto straight = test::run_cli({"train", (dir / "straight.toml").string()});
  ASSERT_EQ(straight.exit_code, 0) << straight.err;
  for (const char* line : {"generating 2 class images for 'a photo of a cat'",
                           "generating 1 class images for 'a photo of a toy'",
                           "data.subsets[0].instance_dir: 2 images, 2 examples",
                           "data.subsets[1].instance_dir: 1 images, 2 examples",
                           "data.subsets[0].class_dir: 2 images", "data.subsets[1].class_dir: 1 images",
                           "training 4 steps: 4 examples"}) {
    EXPECT_NE(straight.err.find(line), std::string::npos) << line << "\n" << straight.err;
  }
  EXPECT_TRUE(fs::exists(dir / "class-cat" / "class-00001.png"));
  EXPECT_TRUE(fs::exists(dir / "class-toy" / "class-00000.png"));
  EXPECT_FALSE(fs::exists(dir / "class-toy" / "class-00001.png"));
  // Both concepts in the outputs: kohya's per-folder table, the model card's trigger words, and
  // the effective config (which a resumed run reads back).
  const auto kohya = io::SafetensorsFile::open((dir / "out" / "out.safetensors").string());
  const std::string dirs = kohya->metadata().at("ss_dataset_dirs");
  EXPECT_NE(dirs.find("\"cat\":{\"img_count\":2,\"n_repeats\":1}"), std::string::npos) << dirs;
  EXPECT_NE(dirs.find("\"toy\":{\"img_count\":1,\"n_repeats\":2}"), std::string::npos) << dirs;
  EXPECT_NE(test::read_file(dir / "out" / "README.md").find("`a photo of sks cat` or `a photo of zwx toy`"),
            std::string::npos);
  const std::string saved = test::read_file(dir / "out" / "train_config.toml");
  EXPECT_NE(saved.find("[[data.subsets]]\ninstance_dir = " + subset_q(dir / "toy")), std::string::npos) << saved;
  const auto check = test::run_cli({"check-config", (dir / "out" / "train_config.toml").string()});
  EXPECT_EQ(check.exit_code, 0) << check.err;

  // Preempted during step 3, resumed from checkpoint 2: the same bits.
  const auto [stopped, resumed] = test::preempt_and_resume(dir / "stopped.toml", 3);
  ASSERT_EQ(stopped.exit_code, 75) << stopped.err;
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(test::read_file(dir / "out" / "pytorch_lora_weights.safetensors"),
            test::read_file(dir / "out2" / "pytorch_lora_weights.safetensors"));
}

TEST(Subsets, ASubsetMissingWhatItNeedsIsAConfigError) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  const std::string head = "[model]\npretrained = " + subset_q(test::reference_dir() / "tiny-sdxl") +
                           "\n[data]\nresolution = 64\n[prior]\nenabled = true\n[output]\ndir = " + subset_q(dir / "out") +
                           "\n";
  const std::vector<std::pair<std::string, std::string>> cases{
      {"[[data.subsets]]\ninstance_prompt = \"x\"\nclass_dir = \"c\"\nclass_prompt = \"y\"\n",
       "data.subsets[0]: needs instance_dir"},
      {"[[data.subsets]]\ninstance_dir = \"a\"\nclass_dir = \"c\"\nclass_prompt = \"y\"\n",
       "data.subsets[0]: needs instance_prompt (or data.instance_prompt)"},
      {"[[data.subsets]]\ninstance_dir = \"a\"\ninstance_prompt = \"x\"\nclass_prompt = \"y\"\n",
       "data.subsets[0]: prior.enabled = true needs class_dir in the subset or data.class_dir"},
      {"[[data.subsets]]\ninstance_dir = \"a\"\ninstance_prompt = \"x\"\nclass_dir = \"c\"\nclass_prompt = \"y\"\n"
       "repeat = 2\n",
       "unknown key 'repeat' in [[data.subsets]] (did you mean 'repeats'?)"},
      {"[[data.subsets]]\ninstance_dir = \"a\"\ninstance_prompt = \"x\"\nclass_dir = \"c\"\nclass_prompt = \"y\"\n"
       "repeats = 0\n",
       "data.subsets[0].repeats: expected an integer in [1, 100000], got the integer 0"},
      {"[[data.subsets]]\ninstance_dir = \"a\"\ninstance_prompt = \"x\"\nclass_dir = \"c\"\nclass_prompt = \"y\"\n"
       "[[data.subsets]]\ninstance_dir = \"b\"\ninstance_prompt = \"z\"\nclass_dir = \"c/\"\nclass_prompt = \"w\"\n",
       "data.subsets[1] and data.subsets[0] share class_dir 'c' with different class prompts"},
      {"[[data.subsets]]\ninstance_dir = \"a\"\ninstance_prompt = \"x\"\nclass_dir = \"c\"\nclass_prompt = \"y\"\n"
       "resolution = 36\n",
       "data.subsets[0].resolution: expected a multiple of 8, got 36"},
      {"[[data.subsets]]\ninstance_dir = \"a\"\ninstance_prompt = \"x\"\nclass_dir = \"c\"\nclass_prompt = \"y\"\n"
       "bucketing = true\nmin_bucket_resolution = 128\n",
       "data.subsets[0].min_bucket_resolution = 128 is above data.resolution = 64"},
      {"[[data.subsets]]\ninstance_dir = \"a\"\ninstance_prompt = \"x\"\nclass_dir = \"c\"\nclass_prompt = \"y\"\n"
       "resolution = 128\nbucketing = true\nbucket_step = 32\nmax_bucket_resolution = 96\n",
       "data.subsets[0].max_bucket_resolution = 96 is below data.subsets[0].resolution = 128"},
      {"[[data.subsets]]\ninstance_dir = \"a\"\ninstance_prompt = \"x\"\nclass_dir = \"c\"\nclass_prompt = \"y\"\n"
       "bucketing = true\nbucket_step = 48\n",
       "data.subsets[0].bucket_step = 48: data.resolution = 64 is not a multiple of it"},
      {"[[data.subsets]]\ninstance_dir = \"a\"\ninstance_prompt = \"x\"\nclass_dir = \"c\"\nclass_prompt = \"y\"\n"
       "bucketing = true\nbucket_step = 128\n",
       "data.subsets[0].bucket_step = 128: data.resolution = 64 is not a multiple of it"},
      {"[[data.subsets]]\ninstance_dir = \"a\"\ninstance_prompt = \"x\"\nclass_dir = \"c\"\nclass_prompt = \"y\"\n"
       "[[data.subsets]]\ninstance_dir = \"./a/\"\ninstance_prompt = \"x\"\nclass_dir = \"c\"\nclass_prompt = \"y\"\n",
       "data.subsets[1] repeats data.subsets[0] (the same instance_dir 'a' with the same prompt and captions): every "
       "image would train twice; raise that subset's repeats instead"},
  };
  for (const auto& [subsets, message] : cases) {
    test::write_file(dir / "run.toml", head + subsets);
    const auto r = test::run_cli({"train", (dir / "run.toml").string()});
    EXPECT_EQ(r.exit_code, 2) << subsets << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << subsets << r.err;
    EXPECT_FALSE(fs::exists(dir / "out"));
  }
  // [data]'s bucket settings matter only through the subsets that bucket: a subset that does
  // not is not held to them.
  test::write_file(dir / "run.toml",
                   "[model]\npretrained = \"m\"\n[data]\nresolution = 64\nbucketing = true\nmin_bucket_resolution = 48\n"
                   "[output]\ndir = " + subset_q(dir / "out") + "\n[[data.subsets]]\ninstance_dir = \"a\"\n"
                   "instance_prompt = \"x\"\nbucketing = false\nresolution = 32\n");
  const auto inherited = test::run_cli({"check-config", (dir / "run.toml").string()});
  EXPECT_EQ(inherited.exit_code, 0) << inherited.err;
  // check-config shows each subset's keys as they resolve: its own, or inherited.
  for (const char* row : {"data.subsets[0].resolution", "inherited from data.min_bucket_resolution"}) {
    EXPECT_NE(inherited.out.find(row), std::string::npos) << row << "\n" << inherited.out;
  }
  test::write_file(dir / "run.toml", head + "[[data.subsets]]\ninstance_dir = \"a\"\ninstance_prompt = \"x\"\n"
                                         "class_dir = \"c\"\nclass_prompt = \"y\"\n");
  const auto set = test::run_cli({"train", (dir / "run.toml").string(), "--set", "data.subsets=[]"});
  EXPECT_EQ(set.exit_code, 2);
  EXPECT_NE(set.err.find("[[data.subsets]] tables are given in the config file, not with --set"), std::string::npos)
      << set.err;
  // A key of one of the file's tables may be set, by its place.
  const auto key = test::run_cli({"check-config", (dir / "run.toml").string(), "--set", "data.subsets[0].repeats=3"});
  EXPECT_EQ(key.exit_code, 0) << key.err;
  EXPECT_NE(key.out.find("--set data.subsets[0].repeats=3"), std::string::npos) << key.out;
  for (const auto& [arg, message] : std::vector<std::pair<std::string, std::string>>{
           {"data.subsets[1].repeats=3", "data.subsets[1]: the config file has 1 [[data.subsets]] table(s)"},
           {"data.subsets[0].repeat=3", "unknown key 'repeat' in [[data.subsets]] (did you mean 'repeats'?)"},
           {"data.subsets[0].repeats=0", "data.subsets[0].repeats: expected an integer in [1, 100000]"},
           {"data.subsets[x].repeats=3", "expected data.subsets[N].key=value"},
           {"data.subsets[00].repeats=3", "data.subsets[00]: write the index without leading zeros"},
           {"data.subsets[99999999999999999999].repeats=3",
            "data.subsets[99999999999999999999]: the config file has 1 [[data.subsets]] table(s)"},
           {"data.subsets[0].instance_dir=", "data.subsets[0].instance_dir: expected a folder path"}}) {
    const auto bad = test::run_cli({"check-config", (dir / "run.toml").string(), "--set", arg});
    EXPECT_EQ(bad.exit_code, 2) << arg;
    EXPECT_NE(bad.err.find(message), std::string::npos) << arg << "\n" << bad.err;
  }
  // A repeat made by --set is blamed on the --set, not on the table's line.
  test::write_file(dir / "run.toml", head + "[[data.subsets]]\ninstance_dir = \"a\"\ninstance_prompt = \"x\"\n"
                                         "class_dir = \"c\"\nclass_prompt = \"y\"\n[[data.subsets]]\n"
                                         "instance_dir = \"b\"\ninstance_prompt = \"x\"\nclass_dir = \"c\"\n"
                                         "class_prompt = \"y\"\n");
  const auto repeat = test::run_cli({"check-config", (dir / "run.toml").string(), "--set", "data.subsets[1].instance_dir=a"});
  EXPECT_EQ(repeat.exit_code, 2);
  EXPECT_NE(repeat.err.find("--set data.subsets[1].instance_dir=a: data.subsets[1] repeats data.subsets[0]"),
            std::string::npos)
      << repeat.err;
  test::write_file(dir / "run.toml", head + "[[data.subsets]]\ninstance_dir = \"a\"\n" +
                                         "[data.extra]\n");  // a table where a key belongs
  EXPECT_EQ(test::run_cli({"train", (dir / "run.toml").string()}).exit_code, 2);
}

// A subset at its own resolution: its images train at that size, every global batch from one
// size (as buckets), and a preempted run resumes to the same bits.
TEST(Subsets, ASubsetTrainsAtItsOwnResolution) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  const auto config = [&](const fs::path& out) {
    return "[model]\npretrained = " + subset_q(test::reference_dir() / "tiny-sdxl") +
           "\n[data]\nresolution = 64\ncenter_crop = true\n[train]\nseed = 0\nbatch_size = 2\nmax_steps = 4\n"
           "[checkpoint]\nevery_steps = 2\n[logging]\ntensorboard = false\n[output]\ndir = " +
           subset_q(out) + "\n[[data.subsets]]\ninstance_dir = " + subset_q(test::subjects_dir() / "chelsea") +
           "\ninstance_prompt = \"a photo of sks cat\"\n[[data.subsets]]\ninstance_dir = " +
           subset_q(test::subjects_dir() / "chelsea") + "\ninstance_prompt = \"a small photo of sks cat\"\n"
           "resolution = 32\n";
  };
  test::write_file(dir / "straight.toml", config(dir / "out"));
  test::write_file(dir / "stopped.toml", config(dir / "out2"));
  const auto straight = test::run_cli({"train", (dir / "straight.toml").string()});
  ASSERT_EQ(straight.exit_code, 0) << straight.err;
  for (const char* line : {"data.subsets[1].instance_dir: 5 images, 5 examples encoded at 32 px",
                           "bucket 64x64: 5 examples", "bucket 32x32: 5 examples"}) {
    EXPECT_NE(straight.err.find(line), std::string::npos) << line << "\n" << straight.err;
  }
  const auto [stopped, resumed] = test::preempt_and_resume(dir / "stopped.toml", 3);
  ASSERT_EQ(stopped.exit_code, 75) << stopped.err;
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(test::read_file(dir / "out" / "pytorch_lora_weights.safetensors"),
            test::read_file(dir / "out2" / "pytorch_lora_weights.safetensors"));
}

// Each subset its own size and bucket settings, with prior preservation: subset 0 buckets its
// photos at 64 px, subset 1 trains them square at 32 px; each subset's class images are drawn
// at its size and train in that size's bucket; a preempted run resumes to the same bits.
TEST(Subsets, EachSubsetHasItsOwnSizeAndBucketsWithPriorPreservation) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  const auto config = [&](const fs::path& out) {
    return "[model]\npretrained = " + subset_q(test::reference_dir() / "tiny-sdxl") +
           "\n[data]\nresolution = 64\ncenter_crop = true\n[prior]\nenabled = true\nsample_steps = 2\n"
           "[train]\nseed = 0\nbatch_size = 2\nmax_steps = 4\n[checkpoint]\nevery_steps = 2\n"
           "[logging]\ntensorboard = false\n[output]\ndir = " + subset_q(out) +
           "\n[[data.subsets]]\ninstance_dir = " + subset_q(test::subjects_dir() / "chelsea") +
           "\ninstance_prompt = \"a photo of sks cat\"\nbucketing = true\nbucket_step = 16\nclass_dir = " +
           subset_q(dir / "class-a") + "\nclass_prompt = \"a photo of a cat\"\nnum_class_images = 2\n"
           "[[data.subsets]]\ninstance_dir = " + subset_q(test::subjects_dir() / "chelsea") +
           "\ninstance_prompt = \"a small photo of sks cat\"\nresolution = 32\nclass_dir = " +
           subset_q(dir / "class-b") + "\nclass_prompt = \"a small photo of a cat\"\nnum_class_images = 1\n";
  };
  test::write_file(dir / "straight.toml", config(dir / "out"));
  test::write_file(dir / "stopped.toml", config(dir / "out2"));
  const auto straight = test::run_cli({"train", (dir / "straight.toml").string()});
  ASSERT_EQ(straight.exit_code, 0) << straight.err;
  for (const char* line : {"data.subsets[0].bucketing: 11 buckets of about 64^2 px",
                           "bucket 64x64: 8 examples (3 instance, 5 class)",
                           "bucket 32x32: 10 examples (5 instance, 5 class)"}) {
    EXPECT_NE(straight.err.find(line), std::string::npos) << line << "\n" << straight.err;
  }
  EXPECT_EQ(straight.err.find("data.subsets[1].bucketing"), std::string::npos) << straight.err;
  // PNG width and height (IHDR, big-endian at bytes 16 and 20): subset 1's class image is 32 px.
  const std::string png = test::read_file(dir / "class-b" / "class-00000.png");
  ASSERT_GT(png.size(), 24u);
  EXPECT_EQ(static_cast<unsigned char>(png[19]), 32);
  EXPECT_EQ(static_cast<unsigned char>(png[23]), 32);
  EXPECT_EQ(static_cast<unsigned char>(test::read_file(dir / "class-a" / "class-00000.png")[19]), 64);
  const auto [stopped, resumed] = test::preempt_and_resume(dir / "stopped.toml", 3);
  ASSERT_EQ(stopped.exit_code, 75) << stopped.err;
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(test::read_file(dir / "out" / "pytorch_lora_weights.safetensors"),
            test::read_file(dir / "out2" / "pytorch_lora_weights.safetensors"));
}
