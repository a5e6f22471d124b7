// CRC-32C (Castagnoli), as TFRecord framing uses it, and its "masked" form.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sdxl::io {

std::uint32_t crc32c(const void* data, std::size_t size);
// ((crc >> 15) | (crc << 17)) + 0xa282ead8: TFRecord's masked CRC.
std::uint32_t masked_crc32c(const void* data, std::size_t size);

}  // namespace sdxl::io
