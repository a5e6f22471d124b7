#include "sdxl_dreambooth/util/sha256.h"

#include "sdxl_dreambooth/error.h"

#include <openssl/evp.h>

#include <cstdio>

namespace sdxl::util {

std::string sha256_hex(const std::string& bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest, &len, EVP_sha256(), nullptr) != 1) {
    throw Error("OpenSSL: SHA-256 failed");
  }
  return to_hex(digest, len);
}

std::string to_hex(const unsigned char* bytes, std::size_t size) {
  static const char kDigits[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * size);
  for (std::size_t i = 0; i < size; ++i) {
    hex += kDigits[bytes[i] >> 4];
    hex += kDigits[bytes[i] & 15];
  }
  return hex;
}

}  // namespace sdxl::util
