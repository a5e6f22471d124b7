// TensorBoard event files: CRC-32C (RFC 3720's check value), TFRecord framing read back with
// its CRCs checked, and the Event messages TensorBoard reads: file version, scalars, images,
// text, and the SessionLog START that makes a resumed run replace the interrupted one's steps.
#include "sdxl_dreambooth/io/crc32c.h"
#include "sdxl_dreambooth/io/event_file.h"
#include "sdxl_dreambooth/error.h"
#include "support/process.h"
#include "tensorboard_event.pb.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

using namespace sdxl;
namespace fs = std::filesystem;

TEST(EventFile, Crc32cCheckValue) {
  EXPECT_EQ(io::crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(io::crc32c("", 0), 0u);
  const std::uint32_t c = io::crc32c("a", 1);
  EXPECT_EQ(io::masked_crc32c("a", 1), ((c >> 15) | (c << 17)) + 0xa282ead8u);
}

TEST(EventFile, RecordsReadBackAsTensorBoardsMessages) {
  test::TempDir dir;
  fs::path path;
  {
    io::EventFileWriter w(dir / "logs");
    path = w.path();
    EXPECT_EQ(path.parent_path(), dir / "logs");
    EXPECT_EQ(path.filename().string().rfind("events.out.tfevents.", 0), 0u);
    w.restart(5);
    w.scalar("loss", 0.25, 6);
    w.image("validation/0_0 sks dog", "PNGBYTES", 64, 32, 6);
    w.text("config", "lr = 1", 0);
    w.flush();
  }
  const auto records = io::read_event_records(path);
  ASSERT_EQ(records.size(), 5u);
  std::vector<tensorboard::Event> e(records.size());
  for (std::size_t i = 0; i < records.size(); ++i) ASSERT_TRUE(e[i].ParseFromString(records[i])) << i;
  EXPECT_EQ(e[0].file_version(), "brain.Event:2");
  EXPECT_EQ(e[1].step(), 5);
  EXPECT_EQ(e[1].session_log().status(), tensorboard::SessionLog::START);
  EXPECT_EQ(e[2].step(), 6);
  EXPECT_EQ(e[2].summary().value(0).tag(), "loss");
  EXPECT_FLOAT_EQ(e[2].summary().value(0).simple_value(), 0.25f);
  EXPECT_GT(e[2].wall_time(), 1.7e9);
  EXPECT_EQ(e[3].summary().value(0).image().width(), 64);
  EXPECT_EQ(e[3].summary().value(0).image().encoded_image_string(), "PNGBYTES");
  EXPECT_EQ(e[4].summary().value(0).metadata().plugin_data().plugin_name(), "text");
  EXPECT_EQ(e[4].summary().value(0).tensor().string_val(0), "lr = 1");

  // A flipped byte is caught by the CRCs.
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(30);
  f.put('\x7f');
  f.close();
  EXPECT_THROW(io::read_event_records(path), Error);
}
