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
  std::string hex;
  char b[3];
  for (unsigned i = 0; i < len; ++i) {
    std::snprintf(b, sizeof b, "%02x", digest[i]);
    hex += b;
  }
  return hex;
}

}  // namespace sdxl::util
