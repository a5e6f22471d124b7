// Randomized corruption of safetensors files, built with AddressSanitizer: every mutant
// either parses (and then every tensor's bytes are read in full) or fails with
// sdxl::Error. An out-of-bounds read aborts the test under ASan.
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/io/safetensors.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>

using namespace sdxl;

namespace {

std::string synthetic_file() {
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[4,4],"data_offsets":[0,64]},)"
      R"("b":{"dtype":"F16","shape":[3],"data_offsets":[64,70]},"c":{"dtype":"I64","shape":[2],"data_offsets":[70,86]}})";
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  out += header;
  for (int i = 0; i < 86; ++i) out += static_cast<char>(i);
  return out;
}

std::string reference_file() {
  const char* env = std::getenv("SDXL_REFERENCE_DIR");
  const std::string dir = env && *env ? env : std::string(SDXL_SOURCE_DIR) + "/../shared/reference";
  std::ifstream in(dir + "/tiny-sdxl/vae/diffusion_pytorch_model.safetensors", std::ios::binary);
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

// Parses `bytes`; on success touches every byte of every tensor.
void parse_and_read(const std::string& bytes) {
  try {
    auto f = io::SafetensorsFile::from_bytes("mutant", bytes);
    unsigned sum = 0;
    for (const auto& t : f->tensors()) {
      const std::uint8_t* p = f->data(t);
      for (std::uint64_t i = 0; i < t.end - t.begin; ++i) sum += p[i];
    }
    (void)sum;
  } catch (const Error&) {
    // A clear error is the other acceptable outcome.
  }
}

void fuzz(const std::string& original, int rounds, unsigned seed) {
  ASSERT_GE(original.size(), 16u);
  std::mt19937 rng(seed);
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<unsigned char>(original[static_cast<std::size_t>(i)]);
  const std::size_t header_end = std::min<std::size_t>(original.size(), 8 + header_len);
  for (int r = 0; r < rounds; ++r) {
    std::string m = original;
    switch (r % 4) {
      case 0:  // truncation anywhere
        m.resize(std::uniform_int_distribution<std::size_t>(0, m.size() - 1)(rng));
        break;
      case 1:  // flipped header bytes (digits, quotes, brackets)
        for (int k = 0; k < 1 + r % 5; ++k) {
          const auto pos = std::uniform_int_distribution<std::size_t>(8, header_end - 1)(rng);
          m[pos] = static_cast<char>(m[pos] ^ (1u << (rng() % 8)));
        }
        break;
      case 2:  // a random digit changed: offsets and shapes that stay valid JSON
        for (int k = 0; k < 3; ++k) {
          const auto pos = std::uniform_int_distribution<std::size_t>(8, header_end - 1)(rng);
          if (std::isdigit(static_cast<unsigned char>(m[pos]))) m[pos] = static_cast<char>('0' + rng() % 10);
        }
        break;
      case 3:  // the length prefix itself
        m[static_cast<std::size_t>(rng() % 8)] = static_cast<char>(rng());
        break;
    }
    parse_and_read(m);
  }
}

}  // namespace

TEST(SafetensorsFuzz, SyntheticFileMutants) { fuzz(synthetic_file(), 20000, 1); }

TEST(SafetensorsFuzz, ReferenceFileMutants) {
  const std::string original = reference_file();
  if (original.empty()) {
    const char* required = std::getenv("SDXL_REFERENCE_REQUIRED");
    if (required && std::string(required) == "1") FAIL() << "reference tiny-sdxl VAE not found";
    GTEST_SKIP() << "reference data not found (set SDXL_REFERENCE_DIR)";
  }
  fuzz(original, 2000, 2);
}
