// A small checked, RAII layer over the HDF5 C API for the checkpoint files: groups, typed
// n-d datasets (chunked with shuffle + deflate when large), UTF-8 text datasets and scalar or
// string-array attributes. Every failure is an sdxl::Error naming the file, the object path
// and HDF5's own reason. No LibTorch here: callers pass raw buffers.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sdxl::io {

// Owns one hid_t and closes it with the matching H5?close.
// Once, first thing in the program: no HDF5 exit handler (it crashes on a file whose write
// failed) and no HDF5 error printing (errors are reported by the calls that failed).
void prepare_hdf5();

class H5Id {
 public:
  using Closer = herr_t (*)(hid_t);
  H5Id() = default;
  H5Id(hid_t id, Closer close) : id_(id), close_(close) {}
  H5Id(H5Id&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = H5I_INVALID_HID; }
  H5Id& operator=(H5Id&& o) noexcept;
  H5Id(const H5Id&) = delete;
  H5Id& operator=(const H5Id&) = delete;
  ~H5Id() { reset(); }

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  // Closes now; returns the close call's status (destructors ignore it).
  herr_t reset();

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer close_ = nullptr;
};

enum class H5Type { kFloat32, kFloat64, kInt64, kUInt8 };
std::size_t h5_type_size(H5Type type);
const char* h5_type_name(H5Type type);

struct H5Array {
  H5Type type = H5Type::kFloat32;
  std::vector<std::int64_t> shape;
  std::vector<unsigned char> bytes;  // row-major, native byte order
  std::int64_t numel() const;
};

// A group or a dataset: something that carries attributes. `where` is "file:/object/path".
class H5Object {
 public:
  H5Object(H5Id id, std::string file, std::string path);
  const std::string& path() const { return path_; }
  const std::string& file() const { return file_; }
  std::string where() const { return file_ + ":" + path_; }
  hid_t id() const { return id_.get(); }

  bool has_attr(const std::string& name) const;
  // A dataset stored with a Fletcher-32 checksum per chunk (checked by every read).
  bool has_checksum() const;
  std::vector<std::string> attr_names() const;
  void set_attr(const std::string& name, const std::string& value);  // variable-length UTF-8
  void set_attr(const std::string& name, const char* value) { set_attr(name, std::string(value)); }
  // Fixed-length ASCII, NUL-terminated, as H5LT/H5IM write (what HDF viewers look for in
  // CLASS / IMAGE_VERSION attributes).
  void set_fixed_attr(const std::string& name, const std::string& value);
  void set_attr(const std::string& name, std::int64_t value);
  void set_attr(const std::string& name, double value);
  void set_attr(const std::string& name, const std::vector<std::string>& values);
  std::string attr_string(const std::string& name) const;
  std::int64_t attr_int(const std::string& name) const;
  double attr_double(const std::string& name) const;
  std::vector<std::string> attr_strings(const std::string& name) const;

 protected:
  H5Id open_attr(const std::string& name) const;
  std::string child_path(const std::string& name) const;

  H5Id id_;
  std::string file_, path_;
};

class H5Group : public H5Object {
 public:
  using H5Object::H5Object;

  H5Group create_group(const std::string& name);
  H5Group open_group(const std::string& name) const;  // error names the missing path
  bool has(const std::string& name) const;            // a direct child of that name exists
  std::vector<std::string> children() const;          // names, sorted

  // `data` holds prod(shape) values of `type`. Every non-empty array is chunked and stored
  // with a Fletcher-32 checksum, so corruption is an error on read; integer arrays of 64 KiB
  // or more are also shuffled and deflated.
  H5Object write_array(const std::string& name, H5Type type, const std::vector<std::int64_t>& shape,
                       const void* data);
  H5Array read_array(const std::string& name) const;
  H5Object open_dataset(const std::string& name) const;
  // A scalar variable-length UTF-8 string dataset (long text such as the TOML config).
  void write_text(const std::string& name, const std::string& text);
  std::string read_text(const std::string& name) const;
};

class H5File {
 public:
  // Creates (truncates) `path` for writing.
  static H5File create(const std::string& path);
  // Opens for reading; a missing, truncated or non-HDF5 file is an Error naming it.
  static H5File open_read_only(const std::string& path);

  H5Group& root() { return *root_; }
  const H5Group& root() const { return *root_; }
  const std::string& path() const { return path_; }
  // Closes the file (every object opened from it must be gone) and checks the result:
  // HDF5 writes its metadata here.
  void close();

 private:
  H5File(H5Id id, std::string path);
  H5Id file_;
  std::string path_;
  std::unique_ptr<H5Group> root_;
};

// HDF5's own messages for the last failure on this thread, innermost first, then cleared.
std::string h5_last_error();

}  // namespace sdxl::io
