// The safetensors format: an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}, then the raw data.
// This reader validates the whole header before any tensor is read, so a corrupt or
// hostile file can never cause an out-of-bounds read. It does not depend on LibTorch
// (see safetensors_torch.h for tensors), so it is fuzzed under AddressSanitizer.
#pragma once

#include "sdxl_dreambooth/io/mapped_file.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace sdxl::io {

enum class DType { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool };

// "F32" -> kF32; nullopt-like: returns false for an unknown name.
bool parse_dtype(const std::string& name, DType* out);
const char* dtype_name(DType dtype);
std::size_t dtype_size(DType dtype);

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;  // offsets into the data area
  std::uint64_t end = 0;
  std::uint64_t numel() const;
};

class SafetensorsFile {
 public:
  // Maps and validates `path`; throws sdxl::Error naming the file (and tensor).
  static std::shared_ptr<const SafetensorsFile> open(const std::string& path);
  // Validates an in-memory file (tests).
  static std::shared_ptr<const SafetensorsFile> from_bytes(std::string label, std::string bytes);

  const std::string& path() const { return file_->path(); }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Start of a tensor's bytes; (end - begin) bytes are readable.
  const std::uint8_t* data(const TensorInfo& t) const { return data_start_ + t.begin; }
  std::size_t file_size() const { return file_->size(); }

 private:
  explicit SafetensorsFile(std::unique_ptr<MappedFile> file);
  void parse();

  std::unique_ptr<MappedFile> file_;
  const std::uint8_t* data_start_ = nullptr;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace sdxl::io
