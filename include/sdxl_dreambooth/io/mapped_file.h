// A read-only memory mapping of a whole file, owned by one object.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace sdxl::io {

class MappedFile {
 public:
  // Maps `path` read-only; throws sdxl::Error naming the path and the failing call.
  explicit MappedFile(const std::string& path);
  // Wraps a copy of `bytes` (tests, in-memory files).
  MappedFile(std::string label, std::string bytes);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
  bool mapped_ = false;
  std::string owned_;  // in-memory contents when not mapped
};

}  // namespace sdxl::io
