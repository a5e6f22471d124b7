// SHA-256 (OpenSSL's EVP) as lower-case hex, of bytes in memory.
#pragma once

#include <cstddef>
#include <string>

namespace sdxl::util {

std::string sha256_hex(const std::string& bytes);
// A digest as lower-case hex.
std::string to_hex(const unsigned char* bytes, std::size_t size);

}  // namespace sdxl::util
