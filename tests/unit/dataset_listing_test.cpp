// data.format: datasets as users bring them — diffusers' imagefolder (metadata.jsonl / .csv,
// captions in data.caption_column, subfolders), kohya's <repeats>_<name> folders with caption
// files, a plain folder — found by what the folder holds; each bad row is one error naming the
// file, the line and what was expected (or a warning with data.skip_bad_images).
#include "sdxl_dreambooth/data/dataset_listing.h"
#include "sdxl_dreambooth/data/image_decoder.h"
#include "sdxl_dreambooth/error.h"
#include "support/process.h"
#include "support/reference.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

using namespace sdxl;
namespace fs = std::filesystem;

namespace {

// An image file the listing accepts (its bytes are never decoded here).
void touch_image(const fs::path& p) {
  fs::create_directories(p.parent_path());
  test::write_file(p, "not decoded by the listing");
}

std::string listing_error(const fs::path& dir, const data::DatasetOptions& o = {}) {
  try {
    data::list_dataset(dir.string(), "data.instance_dir", o);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST(DatasetListing, ImagefolderJsonlCsvAndSubfolders) {
  test::TempDir dir;
  touch_image(dir / "a.png");
  touch_image(dir / "b.jpg");
  touch_image(dir / "sub" / "c.webp");
  touch_image(dir / "unlisted.png");
  test::write_file(dir / "metadata.jsonl",
                   "{\"file_name\": \"a.png\", \"text\": \"a sks dog\"}\n\n{\"file_name\": \"b.jpg\", \"text\": \"\"}\n");
  test::write_file(dir / "sub" / "metadata.csv", "file_name,text\nc.webp,\"a dog, on grass \"\"outside\"\"\"\n");
  EXPECT_EQ(data::detect_dataset_format(dir.path().string()), "imagefolder");
  const auto l = data::list_dataset(dir.path().string(), "data.instance_dir", {});
  EXPECT_EQ(l.format, "imagefolder");
  ASSERT_EQ(l.files.size(), 3u);
  EXPECT_EQ(l.files[0].caption, std::optional<std::string>("a sks dog"));
  EXPECT_FALSE(l.files[1].caption.has_value());  // empty: the instance prompt
  EXPECT_EQ(l.files[2].caption, std::optional<std::string>("a dog, on grass \"outside\""));
  EXPECT_EQ(fs::path(l.files[2].path).filename(), "c.webp");
  // An image no row names is not trained on, and that is said.
  ASSERT_EQ(l.warnings.size(), 1u);
  EXPECT_NE(l.warnings[0].find("1 image(s) in"), std::string::npos) << l.warnings[0];
  EXPECT_NE(l.warnings[0].find("unlisted.png"), std::string::npos) << l.warnings[0];

  data::DatasetOptions column;
  column.caption_column = "prompt";
  EXPECT_NE(listing_error(dir.path(), column).find("metadata.jsonl line 1: no 'prompt' column (data.caption_column)"),
            std::string::npos)
      << listing_error(dir.path(), column);
}

TEST(DatasetListing, BadMetadataRowsAreNamedOrSkipped) {
  test::TempDir dir;
  touch_image(dir / "a.png");
  test::write_file(dir / "metadata.jsonl", "{\"file_name\": \"a.png\", \"text\": \"x\"}\nnot json\n");
  EXPECT_NE(listing_error(dir.path()).find("metadata.jsonl line 2: expected a JSON object"), std::string::npos)
      << listing_error(dir.path());
  test::write_file(dir / "metadata.jsonl", "{\"file_name\": \"a.png\", \"text\": \"x\"}\n{\"file_name\": \"gone.png\", \"text\": \"y\"}\n");
  EXPECT_NE(listing_error(dir.path()).find("line 2: file_name 'gone.png' does not exist"), std::string::npos)
      << listing_error(dir.path());
  test::write_file(dir / "metadata.jsonl", "{\"file_name\": \"a.png\", \"text\": \"x\"}\n{\"file_name\": \"./a.png\", \"text\": \"y\"}\n");
  EXPECT_NE(listing_error(dir.path()).find("line 2: '" + (dir / "a.png").string() + "' is listed again (first at"),
            std::string::npos)
      << listing_error(dir.path());
  test::write_file(dir / "metadata.jsonl", "{\"file_name\": \"a.png\", \"text\": \"x\"}\n{\"file_name\": \"gone.png\", \"text\": \"y\"}\n");
  data::DatasetOptions skip;
  skip.skip_bad_rows = true;
  const auto l = data::list_dataset(dir.path().string(), "data.instance_dir", skip);
  EXPECT_EQ(l.files.size(), 1u);
  ASSERT_EQ(l.warnings.size(), 2u);
  EXPECT_NE(l.warnings[1].find("1 metadata row(s) skipped"), std::string::npos) << l.warnings[1];
  test::write_file(dir / "metadata.jsonl", "{\"file_name\": \"a.png\", \"text\": \"\xff\xfe\"}\n");
  EXPECT_NE(listing_error(dir.path()).find("line 1: not UTF-8 text"), std::string::npos)
      << listing_error(dir.path());
  fs::remove(dir / "metadata.jsonl");
  test::write_file(dir / "metadata.csv", "file_name,text\na.png,x,extra\n");
  EXPECT_NE(listing_error(dir.path()).find("metadata.csv line 2: 3 fields, the header has 2"), std::string::npos)
      << listing_error(dir.path());
  // Excel's "CSV UTF-8" byte-order mark is read past.
  test::write_file(dir / "metadata.csv", "\xEF\xBB\xBF" "file_name,text\na.png,with a mark\n");
  const auto marked = data::list_dataset(dir.path().string(), "data.instance_dir", {});
  ASSERT_EQ(marked.files.size(), 1u);
  EXPECT_EQ(marked.files[0].caption, std::optional<std::string>("with a mark"));
}

TEST(DatasetListing, KohyaFoldersRepeatAndReadCaptionFiles) {
  test::TempDir dir;
  touch_image(dir / "10_sks dog" / "1.png");
  test::write_file(dir / "10_sks dog" / "1.txt", "sks dog, sitting\n");
  touch_image(dir / "2_style" / "2.jpg");
  test::write_file(dir / "2_style" / "2.caption", "a painting\n");
  touch_image(dir / "notes" / "3.png");
  EXPECT_EQ(data::detect_dataset_format(dir.path().string()), "kohya");
  const auto l = data::list_dataset(dir.path().string(), "data.instance_dir", {});
  ASSERT_EQ(l.files.size(), 2u);
  EXPECT_EQ(l.files[0].repeats, 10);
  EXPECT_EQ(l.files[0].caption, std::optional<std::string>("sks dog, sitting"));
  EXPECT_EQ(l.files[1].repeats, 2);
  EXPECT_EQ(l.files[1].caption, std::optional<std::string>("a painting"));  // .caption when no .txt
  ASSERT_EQ(l.warnings.size(), 1u);
  EXPECT_NE(l.warnings[0].find("'notes' is not <repeats>_<name>"), std::string::npos) << l.warnings[0];
  touch_image(dir / "loose.png");  // an image in the root: a plain folder, however its subfolders are named
  EXPECT_EQ(data::detect_dataset_format(dir.path().string()), "folder");
  const auto plain = data::list_dataset(dir.path().string(), "data.instance_dir", {});
  ASSERT_EQ(plain.files.size(), 1u);
  ASSERT_EQ(plain.warnings.size(), 2u);  // said of each kohya-named subfolder it does not read
  EXPECT_NE(plain.warnings[0].find("subfolder '10_sks dog' is not read"), std::string::npos) << plain.warnings[0];
  fs::remove(dir / "loose.png");
  // Images beside the subfolders, and a subfolder without images, are said.
  touch_image(dir / "loose.png");
  fs::create_directories(dir / "3_empty");
  const auto loose = data::list_dataset(dir.path().string(), "data.instance_dir", {"kohya"});
  ASSERT_EQ(loose.warnings.size(), 3u);
  EXPECT_NE(loose.warnings[0].find("subfolder '3_empty' holds no image"), std::string::npos) << loose.warnings[0];
  EXPECT_NE(loose.warnings[2].find("1 image(s) directly in"), std::string::npos) << loose.warnings[2];
  fs::remove(dir / "loose.png");
  touch_image(dir / "0_none" / "4.png");
  EXPECT_NE(listing_error(dir.path()).find("subfolder '0_none': repeats 0 is not in [1, 100000]"), std::string::npos)
      << listing_error(dir.path());
}

TEST(DatasetListing, PlainFoldersAndForcedFormats) {
  SDXL_REQUIRE_REFERENCE();
  const auto chelsea = test::subjects_dir() / "chelsea";
  EXPECT_EQ(data::detect_dataset_format(chelsea.string()), "folder");
  EXPECT_EQ(data::list_dataset(chelsea.string(), "data.instance_dir", {}).files.size(), 5u);
  data::DatasetOptions kohya;
  kohya.format = "kohya";
  EXPECT_NE(listing_error(chelsea, kohya).find("no JPEG, PNG or WebP image"), std::string::npos);
  EXPECT_NE(listing_error(chelsea, kohya).find("(kohya layout)"), std::string::npos);
  data::DatasetOptions imagefolder;
  imagefolder.format = "imagefolder";
  EXPECT_NE(listing_error(chelsea, imagefolder).find("has no metadata.jsonl or metadata.csv (imagefolder layout)"),
            std::string::npos)
      << listing_error(chelsea, imagefolder);
}

// A FIFO named like an image is listed, so that reading it names it (an error, or a warning
// with data.skip_bad_images) instead of vanishing from the data without a word; a folder named
// like an image is not an image.
TEST(DatasetListing, NamedLikeAnImageButNoFile) {
  test::TempDir dir;
  touch_image(dir / "a.png");
  ASSERT_EQ(::mkfifo((dir / "pipe.png").c_str(), 0644), 0);
  fs::create_directories(dir / "folder.png");
  const auto l = data::list_dataset(dir.path().string(), "data.instance_dir", {});
  ASSERT_EQ(l.files.size(), 2u);
  EXPECT_EQ(fs::path(l.files[1].path).filename(), "pipe.png");
  try {
    data::decode_image_file(l.files[1].path);
    ADD_FAILURE() << "a FIFO decoded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("pipe.png' is a FIFO (named pipe), not a regular file"), std::string::npos)
        << e.what();
  }
}
