// SHA-256 (OpenSSL's EVP) as lower-case hex, of bytes in memory.
#pragma once

#include <string>

namespace sdxl::util {

std::string sha256_hex(const std::string& bytes);

}  // namespace sdxl::util
