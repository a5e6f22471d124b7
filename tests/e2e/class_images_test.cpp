// Class images drawn for prior preservation (train/class_images.h): a user's own files in the
// class folder are never overwritten, a folder that already holds some is topped up with new
// images — not copies of the first ones — and topping up gives the very files an
// uninterrupted run draws (so a run stopped during generation resumes exactly).
#include "sdxl_dreambooth/io/png_writer.h"
#include "support/process.h"
#include "support/reference.h"

#include <gtest/gtest.h>

#include <cctype>
#include <set>
#include <sstream>

using namespace sdxl;
namespace fs = std::filesystem;

namespace {

std::string prior_config(const fs::path& class_dir, const fs::path& out, int num_class_images) {
  std::ostringstream s;
  s << "[model]\npretrained = \"" << (test::reference_dir() / "tiny-sdxl").string() << "\"\n"
    << "[data]\ninstance_dir = \"" << (test::subjects_dir() / "chelsea").string() << "\"\n"
    << "instance_prompt = \"a photo of sks cat\"\nresolution = 64\ncenter_crop = true\n"
    << "class_dir = \"" << class_dir.string() << "\"\nclass_prompt = \"a photo of a cat\"\n"
    << "num_class_images = " << num_class_images << "\n"
    << "[prior]\nenabled = true\nsample_steps = 2\nsample_batch_size = 2\n"
    << "[train]\nseed = 0\nmax_steps = 1\n[logging]\ntensorboard = false\n"
    << "[output]\ndir = \"" << out.string() << "\"\n";
  return s.str();
}

// The "seed" text a class image carries (an iTXt chunk: the key, then four zero bytes —
// compression flag and method, empty language and translated key — then the text).
std::string seed_of(const fs::path& png) {
  const std::string bytes = test::read_file(png);
  const std::string key = std::string("seed") + std::string(5, '\0');
  const auto at = bytes.find(key);
  if (at == std::string::npos) return "";
  std::string seed;
  for (std::size_t i = at + key.size(); i < bytes.size() && std::isdigit(static_cast<unsigned char>(bytes[i])); ++i) {
    seed += bytes[i];
  }
  return seed;
}

}  // namespace

TEST(ClassImages, AFolderIsToppedUpWithNewImagesAndNeverOverwritten) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  // The user's own image, named as a generated one would be.
  fs::create_directories(dir / "mixed");
  std::vector<std::uint8_t> px(64 * 64 * 3, 200);
  io::write_png((dir / "mixed" / "class-00001.png").string(), px.data(), 64, 64);
  const std::string users = test::read_file(dir / "mixed" / "class-00001.png");
  test::write_file(dir / "a.toml", prior_config(dir / "mixed", dir / "out-a", 3));
  const auto first = test::run_cli({"train", (dir / "a.toml").string()});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_NE(first.err.find("generating 2 class images"), std::string::npos) << first.err;
  EXPECT_NE(first.err.find("data.class_dir: 3 images"), std::string::npos) << first.err;
  EXPECT_EQ(test::read_file(dir / "mixed" / "class-00001.png"), users);
  EXPECT_TRUE(fs::exists(dir / "mixed" / "class-00000.png"));
  EXPECT_TRUE(fs::exists(dir / "mixed" / "class-00002.png"));

  // Drawn in two runs (2, then 4 more) or in one (6): the same files, no seed twice.
  test::write_file(dir / "b.toml", prior_config(dir / "parts", dir / "out-b", 2));
  ASSERT_EQ(test::run_cli({"train", (dir / "b.toml").string()}).exit_code, 0);
  test::write_file(dir / "c.toml", prior_config(dir / "parts", dir / "out-c", 6));
  const auto topped = test::run_cli({"train", (dir / "c.toml").string()});
  ASSERT_EQ(topped.exit_code, 0) << topped.err;
  EXPECT_NE(topped.err.find("generating 4 class images"), std::string::npos) << topped.err;
  test::write_file(dir / "d.toml", prior_config(dir / "whole", dir / "out-d", 6));
  ASSERT_EQ(test::run_cli({"train", (dir / "d.toml").string()}).exit_code, 0);
  std::set<std::string> seeds;
  for (int n = 0; n < 6; ++n) {
    const std::string name = "class-0000" + std::to_string(n) + ".png";
    EXPECT_EQ(test::read_file(dir / "parts" / name), test::read_file(dir / "whole" / name)) << name;
    seeds.insert(seed_of(dir / "parts" / name));
  }
  EXPECT_EQ(seeds.size(), 6u);
  EXPECT_EQ(seeds.count(""), 0u);
}

// A class folder that is the instance folder would train the drawn class images as the
// subject: refused before anything is written.
TEST(ClassImages, TheInstanceFolderIsNotAClassFolder) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  test::write_file(dir / "run.toml", prior_config(test::subjects_dir() / "chelsea" / ".", dir / "out", 8));
  const auto r = test::run_cli({"train", (dir / "run.toml").string()});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("is data.instance_dir"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "out"));
}

// A class image that does not decode, skipped with data.skip_bad_images: the run says that
// prior preservation has fewer class images than num_class_images asks for.
TEST(ClassImages, FewerUsableClassImagesThanAskedForAreSaid) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  fs::create_directories(dir / "class");
  std::vector<std::uint8_t> px(64 * 64 * 3, 90);
  io::write_png((dir / "class" / "a.png").string(), px.data(), 64, 64);
  io::write_png((dir / "class" / "b.png").string(), px.data(), 64, 64);
  fs::copy_file(test::subjects_dir() / "bad" / "truncated.jpg", dir / "class" / "c.jpg");
  test::write_file(dir / "run.toml", prior_config(dir / "class", dir / "out", 3));
  const auto r = test::run_cli({"train", (dir / "run.toml").string(), "--set", "data.skip_bad_images=true"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find("generating"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("data.class_dir: 2 usable class images of the 3 num_class_images asks for (1 unreadable, "
                       "skipped)"),
            std::string::npos)
      << r.err;
}

// Links in the class folder: a "<name>.tmp" link left there is not written through (the file
// it points to is someone else's), and a dangling link named like a class image stays as it is.
TEST(ClassImages, LinksInTheClassFolderAreNotWrittenThrough) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  fs::create_directories(dir / "links");
  test::write_file(dir / "victim.txt", "someone else's file");
  fs::create_symlink(dir / "victim.txt", dir / "links" / "class-00000.png.tmp");
  fs::create_symlink(dir / "nowhere.png", dir / "links" / "class-00001.png");
  test::write_file(dir / "run.toml", prior_config(dir / "links", dir / "out", 2));
  const auto r = test::run_cli({"train", (dir / "run.toml").string(), "--set", "data.skip_bad_images=true"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(test::read_file(dir / "victim.txt"), "someone else's file");
  EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(dir / "links" / "class-00000.png")));
  EXPECT_TRUE(fs::is_symlink(fs::symlink_status(dir / "links" / "class-00001.png")));
  EXPECT_FALSE(fs::exists(dir / "nowhere.png"));
}

// A file named like an image that is not one does not count as a class image: an error before
// anything is written, or with data.skip_bad_images skipped and a class image drawn in its
// place (under the next free name).
TEST(ClassImages, AFileThatIsNotAnImageIsNotAClassImage) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  fs::create_directories(dir / "class");
  test::write_file(dir / "class" / "class-00000.png", "not a picture\n");
  std::vector<std::uint8_t> px(64 * 64 * 3, 90);
  io::write_png((dir / "class" / "own.png").string(), px.data(), 64, 64);
  test::write_file(dir / "run.toml", prior_config(dir / "class", dir / "out", 2));
  const auto refused = test::run_cli({"train", (dir / "run.toml").string()});
  EXPECT_EQ(refused.exit_code, 2) << refused.err;
  EXPECT_NE(refused.err.find("class-00000.png' is named like an image but is not a JPEG, PNG or WebP file"),
            std::string::npos)
      << refused.err;
  EXPECT_FALSE(fs::exists(dir / "out"));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir / "class"), fs::directory_iterator()), 2);

  const auto skipped = test::run_cli({"train", (dir / "run.toml").string(), "--set", "data.skip_bad_images=true"});
  ASSERT_EQ(skipped.exit_code, 0) << skipped.err;
  EXPECT_NE(skipped.err.find("generating 1 class images"), std::string::npos) << skipped.err;
  EXPECT_TRUE(fs::exists(dir / "class" / "class-00001.png"));
  EXPECT_EQ(test::read_file(dir / "class" / "class-00000.png"), "not a picture\n");
}

// A class folder that cannot be written while images are missing is found before the run
// starts (exit 2, nothing written), not when the first class image is saved.
TEST(ClassImages, AnUnwritableClassFolderIsRefusedUpFront) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  const fs::path ro = dir / "readonly";
  const test::TmpfsMount mount(ro, "size=1m,ro");
  if (!mount.mounted()) GTEST_SKIP() << "cannot mount a read-only tmpfs here: " << mount.error();
  test::write_file(dir / "run.toml", prior_config(ro, dir / "out", 2));
  const auto r = test::run_cli({"train", (dir / "run.toml").string()});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("data.class_dir (2 class images to draw): '" + ro.string() + "' is not writable by this user"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(dir / "out"));
}
