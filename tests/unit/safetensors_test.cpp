#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/io/safetensors.h"
#include "sdxl_dreambooth/io/safetensors_torch.h"
#include "support/process.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

using namespace sdxl;

namespace {

// A file with the given JSON header and `data_bytes` zero bytes of data.
std::string make_file(const std::string& header, std::size_t data_bytes, std::int64_t claimed_len = -1) {
  std::string out(8, '\0');
  const std::uint64_t n = claimed_len >= 0 ? static_cast<std::uint64_t>(claimed_len) : header.size();
  for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + std::string(data_bytes, '\0');
}

std::string error_of(const std::string& bytes) {
  try {
    io::SafetensorsFile::from_bytes("t.safetensors", bytes);
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an error";
  return {};
}

}  // namespace

TEST(Safetensors, ValidFileParses) {
  auto f = io::SafetensorsFile::from_bytes(
      "t", make_file(R"({"__metadata__":{"a":"b"},"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                     R"("y":{"dtype":"BF16","shape":[],"data_offsets":[8,10]}})",
                     10));
  ASSERT_EQ(f->tensors().size(), 2u);
  EXPECT_EQ(f->metadata().at("a"), "b");
  EXPECT_EQ(f->find("y")->dtype, io::DType::kBF16);
}

TEST(Safetensors, EveryCorruptionIsNamed) {
  const std::string ok = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  EXPECT_NE(error_of("abc").find("too short"), std::string::npos);
  EXPECT_NE(error_of(make_file(ok, 8, 1000)).find("runs past the end of the file"), std::string::npos);
  EXPECT_NE(error_of(make_file("{not json", 0)).find("malformed JSON header"), std::string::npos);
  EXPECT_NE(error_of(make_file(R"({"x":{"dtype":"F31","shape":[2],"data_offsets":[0,8]}})", 8))
                .find("tensor 'x': unknown dtype 'F31'"),
            std::string::npos);
  EXPECT_NE(error_of(make_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,80]}})", 8))
                .find("outside the data area"),
            std::string::npos);
  EXPECT_NE(error_of(make_file(R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8))
                .find("shape × dtype size"),
            std::string::npos);
  EXPECT_NE(error_of(make_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                               R"("y":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                               12))
                .find("overlaps"),
            std::string::npos);
  EXPECT_NE(error_of(make_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12)).find("hole"),
            std::string::npos);
  EXPECT_NE(error_of(make_file(ok, 9)).find("trailing bytes"), std::string::npos);
  EXPECT_NE(error_of(make_file(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                               R"("x":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                               16))
                .find("tensor 'x' appears twice"),
            std::string::npos);
  EXPECT_NE(error_of(make_file(R"({"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8)).find("non-negative"),
            std::string::npos);
  EXPECT_NE(error_of(make_file(R"({"x":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}})", 8))
                .find("overflows"),
            std::string::npos);
}

TEST(Safetensors, WriterRoundTripsAndIsAligned) {
  test::TempDir dir;
  const auto path = (dir / "x.safetensors").string();
  const auto a = torch::randn({3, 5}), b = torch::arange(7, torch::kLong), c = torch::randn({2}).to(torch::kHalf);
  io::write_safetensors(path, {{"a", a}, {"b", b}, {"c", c}}, {{"format", "pt"}});
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  auto f = io::SafetensorsFile::open(path);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  EXPECT_TRUE(torch::equal(io::tensor_view(f, *f->find("a")), a));
  EXPECT_TRUE(torch::equal(io::tensor_view(f, *f->find("b")), b));
  EXPECT_TRUE(torch::equal(io::tensor_view(f, *f->find("c")), c));
  const auto raw = test::read_file(path);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(raw[static_cast<std::size_t>(i)]);
  EXPECT_EQ((8 + n) % 8, 0u);
}

TEST(Safetensors, MissingFileNamesThePath) {
  try {
    io::SafetensorsFile::open("/nonexistent/model.safetensors");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("open '/nonexistent/model.safetensors' failed"), std::string::npos);
  }
}
