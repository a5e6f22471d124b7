#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/io/label_font.h"
#include "sdxl_dreambooth/io/png_writer.h"
#include "support/process.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

using namespace sdxl;

TEST(Png, RoundTripWithUtf8TextChunks) {
  test::TempDir dir;
  const int w = 5, h = 3;
  std::vector<std::uint8_t> rgb(w * h * 3);
  for (std::size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<std::uint8_t>(i * 7);
  const auto path = (dir / "x.png").string();
  io::write_png(path, rgb.data(), w, h, {{"prompt", "sks dog at the beach — café"}, {"seed", "0"}});
  // Only the image: its temporary file was renamed to it.
  std::size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) files += e.path().filename() == "x.png" ? 1 : 100;
  EXPECT_EQ(files, 1u);
  // Readable as any file the user writes (0666 less the umask; mkstemp's 0600 would not be).
  const mode_t mask = ::umask(0);
  ::umask(mask);
  const auto perms = std::filesystem::status(path).permissions();
  EXPECT_EQ(static_cast<mode_t>(perms) & 0777, 0666 & ~mask);
  const auto back = io::read_png(path);
  EXPECT_EQ(back.width, w);
  EXPECT_EQ(back.height, h);
  EXPECT_EQ(back.rgb, rgb);
  ASSERT_EQ(back.text.size(), 2u);
  EXPECT_EQ(back.text[0].second, "sks dog at the beach — café");
}

TEST(Png, UnwritableAndUnreadablePathsAreNamed) {
  std::vector<std::uint8_t> rgb(3);
  try {
    io::write_png("/nonexistent/dir/x.png", rgb.data(), 1, 1);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/x.png.tmp"), std::string::npos) << e.what();
  }
  test::TempDir dir;
  test::write_file(dir / "bad.png", "not a png");
  EXPECT_THROW(io::read_png((dir / "bad.png").string()), Error);
}

// A label cut to fit: the longest prefix with "..." that fits, in one pass (a 100 KB prompt as
// a grid caption took minutes when each shorter prefix was measured again).
TEST(LabelFont, FitCutsLongTextInOnePass) {
  std::string why;
  const auto font = io::LabelFont::find(12, &why);
  if (!font) GTEST_SKIP() << "no label font here: " << why;
  EXPECT_EQ(font->fit("short", 1000), "short");
  std::string text;
  for (int i = 0; i < 25000; ++i) text += "cat ";
  const std::string cut = font->fit(text, 200);
  ASSERT_GE(cut.size(), 3u);
  EXPECT_EQ(cut.substr(cut.size() - 3), "...");
  EXPECT_LE(font->width(cut), 200);
  // The longest such prefix: one more character and the label would not fit.
  const std::string prefix = cut.substr(0, cut.size() - 3);
  ASSERT_EQ(text.compare(0, prefix.size(), prefix), 0);
  EXPECT_GT(font->width(prefix + text[prefix.size()] + "..."), 200);
  EXPECT_EQ(font->fit(text, 1), "");
}
