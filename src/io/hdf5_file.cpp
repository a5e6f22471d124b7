#include "sdxl_dreambooth/io/hdf5_file.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/util/regular_file.h"
#include "sdxl_dreambooth/util/strings.h"

#include <H5Epublic.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace sdxl::io {
namespace {

herr_t collect_error(unsigned n, const H5E_error2_t* e, void* out) {
  auto& messages = *static_cast<std::vector<std::string>*>(out);
  if (e->desc && *e->desc && messages.size() < 4) {
    std::string m = e->desc;
    if (std::find(messages.begin(), messages.end(), m) == messages.end()) messages.push_back(m);
  }
  return 0;
}

// HDF5 prints its error stack to stderr by default; we report errors ourselves.
void silence_hdf5() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

// The operating system's word for a failed write or read ("No space left on device"), from
// the "errno = 28, error message = '...'" HDF5's file driver puts on its error stack.
std::string system_error_of(const std::string& reason) {
  const std::string key = "error message = '";
  const auto at = reason.find(key);
  if (at == std::string::npos) return {};
  const auto end = reason.find('\'', at + key.size());
  return end == std::string::npos ? std::string() : reason.substr(at + key.size(), end - at - key.size());
}

[[noreturn]] void fail(const std::string& what) {
  const std::string reason = h5_last_error();
  const std::string system = system_error_of(reason);
  if (!system.empty()) {
    throw Error(what + ": " + system,
                system.find("space") != std::string::npos || system.find("quota") != std::string::npos
                    ? "free space (or quota) on that filesystem, e.g. with a smaller checkpoint.keep_last, "
                      "then resume: the previous checkpoint is intact"
                    : std::string());
  }
  throw Error(what + (reason.empty() ? std::string() : " (HDF5: " + reason + ")"));
}

hid_t check(hid_t id, const std::string& what) {
  if (id < 0) fail(what);
  return id;
}

void check_status(herr_t status, const std::string& what) {
  if (status < 0) fail(what);
}

hid_t file_type(H5Type t) {
  switch (t) {
    case H5Type::kFloat32: return H5T_IEEE_F32LE;
    case H5Type::kFloat64: return H5T_IEEE_F64LE;
    case H5Type::kInt64: return H5T_STD_I64LE;
    case H5Type::kUInt8: return H5T_STD_U8LE;
  }
  return H5T_STD_U8LE;
}

hid_t memory_type(H5Type t) {
  switch (t) {
    case H5Type::kFloat32: return H5T_NATIVE_FLOAT;
    case H5Type::kFloat64: return H5T_NATIVE_DOUBLE;
    case H5Type::kInt64: return H5T_NATIVE_INT64;
    case H5Type::kUInt8: return H5T_NATIVE_UINT8;
  }
  return H5T_NATIVE_UINT8;
}

H5Id vlen_utf8_type() {
  H5Id t(check(H5Tcopy(H5T_C_S1), "H5Tcopy"), H5Tclose);
  check_status(H5Tset_size(t.get(), H5T_VARIABLE), "H5Tset_size");
  check_status(H5Tset_cset(t.get(), H5T_CSET_UTF8), "H5Tset_cset");
  return t;
}

// Fixed-length UTF-8 strings of `size` bytes, NUL-padded. Everything this program writes is
// fixed-length: a variable-length string lives in HDF5's global heap, which has no checksum,
// and a damaged length there crashes the HDF5 library on read (1.10) instead of failing it.
H5Id fixed_utf8_type(std::size_t size) {
  H5Id t(check(H5Tcopy(H5T_C_S1), "H5Tcopy"), H5Tclose);
  check_status(H5Tset_size(t.get(), std::max<std::size_t>(size, 1)), "H5Tset_size");
  check_status(H5Tset_strpad(t.get(), H5T_STR_NULLPAD), "H5Tset_strpad");
  check_status(H5Tset_cset(t.get(), H5T_CSET_UTF8), "H5Tset_cset");
  return t;
}

H5Id scalar_space() { return H5Id(check(H5Screate(H5S_SCALAR), "H5Screate"), H5Sclose); }

// Reads a string attribute or dataset value whatever its string flavour (fixed or variable).
template <typename Read>
std::string read_string_value(hid_t stored_type, hid_t space, const std::string& where, Read read) {
  if (H5Tget_class(stored_type) != H5T_STRING) throw Error(where + ": expected a string, found another type");
  if (H5Sget_simple_extent_npoints(space) != 1) throw Error(where + ": expected a single string");
  if (H5Tis_variable_str(stored_type) > 0) {
    H5Id mem = vlen_utf8_type();
    char* value = nullptr;
    check_status(read(mem.get(), &value), "reading " + where);
    std::string s = value ? value : "";
    H5free_memory(value);
    return s;
  }
  // A copy of the stored type (HDF5 converts no strings between ASCII and UTF-8), one byte
  // longer and NUL-terminated whatever the stored padding.
  const std::size_t size = H5Tget_size(stored_type);
  H5Id mem(check(H5Tcopy(stored_type), "H5Tcopy"), H5Tclose);
  check_status(H5Tset_size(mem.get(), size + 1), "H5Tset_size");
  check_status(H5Tset_strpad(mem.get(), H5T_STR_NULLTERM), "H5Tset_strpad");
  std::vector<char> buf(size + 1, '\0');
  check_status(read(mem.get(), buf.data()), "reading " + where);
  return std::string(buf.data(), strnlen(buf.data(), size));
}

}  // namespace

void prepare_hdf5() {
  // Before HDF5 initialises: its exit handler would flush and close, at exit, a file whose
  // write failed (disk full) and crash; every file here is closed by its owner, or abandoned.
  H5dont_atexit();
  silence_hdf5();
}

std::string h5_last_error() {
  std::vector<std::string> messages;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, collect_error, &messages);
  H5Eclear2(H5E_DEFAULT);
  return util::join(messages, "; ");
}

H5Id& H5Id::operator=(H5Id&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = o.id_;
    close_ = o.close_;
    o.id_ = H5I_INVALID_HID;
  }
  return *this;
}

herr_t H5Id::reset() {
  herr_t status = 0;
  if (id_ >= 0 && close_) status = close_(id_);
  id_ = H5I_INVALID_HID;
  return status;
}

std::size_t h5_type_size(H5Type type) {
  switch (type) {
    case H5Type::kFloat32: return 4;
    case H5Type::kFloat64: return 8;
    case H5Type::kInt64: return 8;
    case H5Type::kUInt8: return 1;
  }
  return 1;
}

const char* h5_type_name(H5Type type) {
  switch (type) {
    case H5Type::kFloat32: return "float32";
    case H5Type::kFloat64: return "float64";
    case H5Type::kInt64: return "int64";
    case H5Type::kUInt8: return "uint8";
  }
  return "?";
}

std::int64_t H5Array::numel() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

// ---- H5Object --------------------------------------------------------------------------

H5Object::H5Object(H5Id id, std::string file, std::string path)
    : id_(std::move(id)), file_(std::move(file)), path_(std::move(path)) {}

std::string H5Object::child_path(const std::string& name) const {
  return path_ == "/" ? "/" + name : path_ + "/" + name;
}

bool H5Object::has_attr(const std::string& name) const {
  const htri_t r = H5Aexists(id(), name.c_str());
  if (r < 0) fail(where() + ": cannot look up attribute \"" + name + "\"");
  return r > 0;
}

std::vector<std::string> H5Object::attr_names() const {
  // H5Aiterate2: the same call from HDF5 1.8 to 1.14 (H5Oget_info changed signature twice).
  std::vector<std::string> names;
  hsize_t index = 0;
  const auto collect = [](hid_t, const char* name, const H5A_info_t*, void* out) -> herr_t {
    static_cast<std::vector<std::string>*>(out)->push_back(name);
    return 0;
  };
  check_status(H5Aiterate2(id(), H5_INDEX_NAME, H5_ITER_INC, &index, collect, &names), where() + ": listing attributes");
  return names;
}

H5Id H5Object::open_attr(const std::string& name) const {
  if (!has_attr(name)) throw Error(where() + ": missing attribute \"" + name + "\"");
  return H5Id(check(H5Aopen(id(), name.c_str(), H5P_DEFAULT), where() + ": opening attribute \"" + name + "\""),
              H5Aclose);
}

namespace {

// Replaces an existing attribute, so rewriting a value is not an error.
H5Id create_attr(const H5Object& o, const std::string& name, hid_t type, hid_t space) {
  if (o.has_attr(name)) check_status(H5Adelete(o.id(), name.c_str()), o.where() + ": replacing attribute " + name);
  return H5Id(check(H5Acreate2(o.id(), name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT),
                    o.where() + ": creating attribute \"" + name + "\""),
              H5Aclose);
}

}  // namespace

void H5Object::set_attr(const std::string& name, const std::string& value) {
  H5Id type = fixed_utf8_type(value.size());
  H5Id space = scalar_space();
  H5Id a = create_attr(*this, name, type.get(), space.get());
  std::vector<char> buf(std::max<std::size_t>(value.size(), 1), '\0');
  std::copy(value.begin(), value.end(), buf.begin());
  check_status(H5Awrite(a.get(), type.get(), buf.data()), where() + ": writing attribute \"" + name + "\"");
}

void H5Object::set_fixed_attr(const std::string& name, const std::string& value) {
  H5Id type(check(H5Tcopy(H5T_C_S1), "H5Tcopy"), H5Tclose);
  check_status(H5Tset_size(type.get(), value.size() + 1), "H5Tset_size");
  check_status(H5Tset_strpad(type.get(), H5T_STR_NULLTERM), "H5Tset_strpad");
  H5Id space = scalar_space();
  H5Id a = create_attr(*this, name, type.get(), space.get());
  check_status(H5Awrite(a.get(), type.get(), value.c_str()), where() + ": writing attribute \"" + name + "\"");
}

void H5Object::set_attr(const std::string& name, std::int64_t value) {
  H5Id space = scalar_space();
  H5Id a = create_attr(*this, name, H5T_STD_I64LE, space.get());
  check_status(H5Awrite(a.get(), H5T_NATIVE_INT64, &value), where() + ": writing attribute \"" + name + "\"");
}

void H5Object::set_attr(const std::string& name, double value) {
  H5Id space = scalar_space();
  H5Id a = create_attr(*this, name, H5T_IEEE_F64LE, space.get());
  check_status(H5Awrite(a.get(), H5T_NATIVE_DOUBLE, &value), where() + ": writing attribute \"" + name + "\"");
}

void H5Object::set_attr(const std::string& name, const std::vector<std::string>& values) {
  std::size_t width = 1;
  for (const auto& v : values) width = std::max(width, v.size());
  H5Id type = fixed_utf8_type(width);
  const hsize_t n = values.size();
  H5Id space(check(H5Screate_simple(1, &n, nullptr), "H5Screate_simple"), H5Sclose);
  H5Id a = create_attr(*this, name, type.get(), space.get());
  std::vector<char> buf(values.size() * width, '\0');
  for (std::size_t i = 0; i < values.size(); ++i) std::copy(values[i].begin(), values[i].end(), buf.begin() + i * width);
  if (!values.empty()) {
    check_status(H5Awrite(a.get(), type.get(), buf.data()), where() + ": writing attribute \"" + name + "\"");
  }
}

std::string H5Object::attr_string(const std::string& name) const {
  H5Id a = open_attr(name);
  H5Id type(check(H5Aget_type(a.get()), "H5Aget_type"), H5Tclose);
  H5Id space(check(H5Aget_space(a.get()), "H5Aget_space"), H5Sclose);
  return read_string_value(type.get(), space.get(), where() + " attribute \"" + name + "\"",
                           [&](hid_t mem, void* buf) { return H5Aread(a.get(), mem, buf); });
}

std::int64_t H5Object::attr_int(const std::string& name) const {
  H5Id a = open_attr(name);
  H5Id type(check(H5Aget_type(a.get()), "H5Aget_type"), H5Tclose);
  H5Id space(check(H5Aget_space(a.get()), "H5Aget_space"), H5Sclose);
  if (H5Tget_class(type.get()) != H5T_INTEGER || H5Sget_simple_extent_npoints(space.get()) != 1) {
    throw Error(where() + ": attribute \"" + name + "\" is not a single integer");
  }
  std::int64_t v = 0;
  check_status(H5Aread(a.get(), H5T_NATIVE_INT64, &v), where() + ": reading attribute \"" + name + "\"");
  return v;
}

double H5Object::attr_double(const std::string& name) const {
  H5Id a = open_attr(name);
  H5Id type(check(H5Aget_type(a.get()), "H5Aget_type"), H5Tclose);
  H5Id space(check(H5Aget_space(a.get()), "H5Aget_space"), H5Sclose);
  const H5T_class_t c = H5Tget_class(type.get());
  if ((c != H5T_FLOAT && c != H5T_INTEGER) || H5Sget_simple_extent_npoints(space.get()) != 1) {
    throw Error(where() + ": attribute \"" + name + "\" is not a single number");
  }
  double v = 0;
  check_status(H5Aread(a.get(), H5T_NATIVE_DOUBLE, &v), where() + ": reading attribute \"" + name + "\"");
  return v;
}

std::vector<std::string> H5Object::attr_strings(const std::string& name) const {
  H5Id a = open_attr(name);
  H5Id type(check(H5Aget_type(a.get()), "H5Aget_type"), H5Tclose);
  H5Id space(check(H5Aget_space(a.get()), "H5Aget_space"), H5Sclose);
  if (H5Tget_class(type.get()) != H5T_STRING) {
    throw Error(where() + ": attribute \"" + name + "\" is not a list of strings");
  }
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  if (n < 0) fail(where() + ": attribute \"" + name + "\"");
  std::vector<std::string> out;
  if (n == 0) return out;
  const std::string what = where() + ": reading attribute \"" + name + "\"";
  if (H5Tis_variable_str(type.get()) > 0) {  // written by format version 1
    std::vector<char*> ptrs(static_cast<std::size_t>(n), nullptr);
    H5Id mem = vlen_utf8_type();
    check_status(H5Aread(a.get(), mem.get(), ptrs.data()), what);
    for (char* p : ptrs) {
      out.emplace_back(p ? p : "");
      H5free_memory(p);
    }
    return out;
  }
  const std::size_t width = H5Tget_size(type.get());
  H5Id mem(check(H5Tcopy(type.get()), "H5Tcopy"), H5Tclose);
  std::vector<char> buf(static_cast<std::size_t>(n) * width, '\0');
  check_status(H5Aread(a.get(), mem.get(), buf.data()), what);
  for (hssize_t i = 0; i < n; ++i) {
    const char* p = buf.data() + static_cast<std::size_t>(i) * width;
    out.emplace_back(p, strnlen(p, width));
  }
  return out;
}

// ---- H5Group ---------------------------------------------------------------------------

H5Group H5Group::create_group(const std::string& name) {
  H5Id lcpl(check(H5Pcreate(H5P_LINK_CREATE), "H5Pcreate"), H5Pclose);
  check_status(H5Pset_char_encoding(lcpl.get(), H5T_CSET_UTF8), "H5Pset_char_encoding");
  const hid_t g = H5Gcreate2(id(), name.c_str(), lcpl.get(), H5P_DEFAULT, H5P_DEFAULT);
  return H5Group(H5Id(check(g, where() + ": cannot create group \"" + name + "\""), H5Gclose), file_,
                 child_path(name));
}

bool H5Group::has(const std::string& name) const {
  const htri_t r = H5Lexists(id(), name.c_str(), H5P_DEFAULT);
  if (r < 0) fail(where() + ": cannot look up \"" + name + "\"");
  return r > 0;
}

H5Group H5Group::open_group(const std::string& name) const {
  if (!has(name)) throw Error(file_ + ": missing group " + child_path(name));
  const hid_t g = H5Gopen2(id(), name.c_str(), H5P_DEFAULT);
  return H5Group(H5Id(check(g, file_ + ": cannot open group " + child_path(name)), H5Gclose), file_, child_path(name));
}

std::vector<std::string> H5Group::children() const {
  H5G_info_t info;
  check_status(H5Gget_info(id(), &info), where() + ": H5Gget_info");
  std::vector<std::string> names;
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t n = H5Lget_name_by_idx(id(), ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
    if (n < 0) fail(where() + ": reading member names");
    std::string name(static_cast<std::size_t>(n), '\0');
    H5Lget_name_by_idx(id(), ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size() + 1, H5P_DEFAULT);
    names.push_back(name);
  }
  return names;
}

H5Object H5Group::write_array(const std::string& name, H5Type type, const std::vector<std::int64_t>& shape,
                              const void* data) {
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  hsize_t numel = 1;
  for (auto d : dims) numel *= d;
  H5Id space(check(dims.empty() ? H5Screate(H5S_SCALAR)
                                : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
                   "H5Screate"),
             H5Sclose);
  H5Id dcpl(check(H5Pcreate(H5P_DATASET_CREATE), "H5Pcreate"), H5Pclose);
  const std::size_t bytes = numel * h5_type_size(type);
  // Only integer data (sample images, metric steps) is compressed. Trained weights and AdamW
  // moments are close to random bits: shuffle + deflate saved 12 % of a rank-32 SDXL
  // checkpoint (531 -> 465 MiB) but deflate ran at ~24 MB/s, a 20 s write every other rank
  // waits for (docs/benchmarks.md).
  const bool compress = type == H5Type::kUInt8 || type == H5Type::kInt64;
  if (numel > 0 && !dims.empty()) {
    // Chunks of about 1 MiB along the first axis (a chunked layout is what filters need).
    std::vector<hsize_t> chunk = dims;
    const hsize_t row_bytes = bytes / std::max<hsize_t>(dims[0], 1);
    chunk[0] = std::clamp<hsize_t>((1u << 20) / std::max<hsize_t>(row_bytes, 1), 1, dims[0]);
    check_status(H5Pset_chunk(dcpl.get(), static_cast<int>(chunk.size()), chunk.data()), "H5Pset_chunk");
    if (compress && bytes >= 64 * 1024) {
      // Shuffle groups the bytes of each value position, which is what lets deflate find runs.
      check_status(H5Pset_shuffle(dcpl.get()), "H5Pset_shuffle");
      check_status(H5Pset_deflate(dcpl.get(), 1), "H5Pset_deflate");
    }
    // Last, so that it covers the stored bytes: a flipped bit anywhere fails the read.
    check_status(H5Pset_fletcher32(dcpl.get()), "H5Pset_fletcher32");
  }
  const hid_t d = H5Dcreate2(id(), name.c_str(), file_type(type), space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT);
  H5Object ds(H5Id(check(d, where() + ": cannot create dataset \"" + name + "\""), H5Dclose), file_, child_path(name));
  if (numel > 0) {
    check_status(H5Dwrite(ds.id(), memory_type(type), H5S_ALL, H5S_ALL, H5P_DEFAULT, data),
                 file_ + ": writing dataset " + ds.path());
  }
  return ds;
}

H5Object H5Group::open_dataset(const std::string& name) const {
  if (!has(name)) throw Error(file_ + ": missing dataset " + child_path(name));
  const hid_t d = H5Dopen2(id(), name.c_str(), H5P_DEFAULT);
  return H5Object(H5Id(check(d, file_ + ": cannot open dataset " + child_path(name)), H5Dclose), file_,
                  child_path(name));
}

bool H5Object::has_checksum() const {
  const hid_t plist = H5Dget_create_plist(id());
  if (plist < 0) return false;
  unsigned flags = 0;
  std::size_t nelmts = 0;
  const herr_t found =
      H5Pget_filter_by_id2(plist, H5Z_FILTER_FLETCHER32, &flags, &nelmts, nullptr, 0, nullptr, nullptr);
  H5Pclose(plist);
  return found >= 0;
}

H5Array H5Group::read_array(const std::string& name) const {
  const H5Object ds = open_dataset(name);
  H5Id type(check(H5Dget_type(ds.id()), "H5Dget_type"), H5Tclose);
  H5Id space(check(H5Dget_space(ds.id()), "H5Dget_space"), H5Sclose);
  H5Array a;
  const H5T_class_t c = H5Tget_class(type.get());
  const std::size_t size = H5Tget_size(type.get());
  if (c == H5T_FLOAT && size == 4) {
    a.type = H5Type::kFloat32;
  } else if (c == H5T_FLOAT && size == 8) {
    a.type = H5Type::kFloat64;
  } else if (c == H5T_INTEGER && size == 8 && H5Tget_sign(type.get()) == H5T_SGN_2) {
    a.type = H5Type::kInt64;
  } else if (c == H5T_INTEGER && size == 1 && H5Tget_sign(type.get()) == H5T_SGN_NONE) {
    a.type = H5Type::kUInt8;
  } else {
    throw Error(ds.where() + ": unexpected element type (expected float32, float64, int64 or uint8)");
  }
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0) fail(ds.where() + ": reading its shape");
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
  if (rank > 0) H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  a.shape.assign(dims.begin(), dims.end());
  a.bytes.resize(static_cast<std::size_t>(a.numel()) * h5_type_size(a.type));
  if (!a.bytes.empty()) {
    check_status(H5Dread(ds.id(), memory_type(a.type), H5S_ALL, H5S_ALL, H5P_DEFAULT, a.bytes.data()),
                 "reading dataset " + ds.where());
  }
  return a;
}

void H5Group::write_text(const std::string& name, const std::string& text) {
  // One fixed-length string in a chunked one-element dataset: chunking is what lets the
  // Fletcher-32 filter cover it, so a damaged byte fails the read instead of changing the text.
  H5Id type = fixed_utf8_type(text.size());
  const hsize_t one = 1;
  H5Id space(check(H5Screate_simple(1, &one, nullptr), "H5Screate_simple"), H5Sclose);
  H5Id dcpl(check(H5Pcreate(H5P_DATASET_CREATE), "H5Pcreate"), H5Pclose);
  check_status(H5Pset_chunk(dcpl.get(), 1, &one), "H5Pset_chunk");
  check_status(H5Pset_fletcher32(dcpl.get()), "H5Pset_fletcher32");
  const hid_t d = H5Dcreate2(id(), name.c_str(), type.get(), space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT);
  H5Id ds(check(d, where() + ": cannot create dataset \"" + name + "\""), H5Dclose);
  std::vector<char> buf(std::max<std::size_t>(text.size(), 1), '\0');
  std::copy(text.begin(), text.end(), buf.begin());
  check_status(H5Dwrite(ds.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()),
               file_ + ": writing dataset " + child_path(name));
}

std::string H5Group::read_text(const std::string& name) const {
  const H5Object ds = open_dataset(name);
  H5Id type(check(H5Dget_type(ds.id()), "H5Dget_type"), H5Tclose);
  H5Id space(check(H5Dget_space(ds.id()), "H5Dget_space"), H5Sclose);
  return read_string_value(type.get(), space.get(), ds.where(), [&](hid_t mem, void* buf) {
    return H5Dread(ds.id(), mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
  });
}

// ---- H5File ----------------------------------------------------------------------------

H5File::H5File(H5Id id, std::string path) : file_(std::move(id)), path_(std::move(path)) {
  const hid_t g = H5Gopen2(file_.get(), "/", H5P_DEFAULT);
  root_ = std::make_unique<H5Group>(H5Id(check(g, path_ + ": cannot open the root group"), H5Gclose), path_, "/");
}

namespace {

H5Id file_access(const std::string& path) {
  H5Id fapl(check(H5Pcreate(H5P_FILE_ACCESS), "H5Pcreate"), H5Pclose);
  // SEMI: closing fails while objects are still open, instead of silently deferring the
  // final metadata write past our fsync.
  check_status(H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_SEMI), "H5Pset_fclose_degree");
  // 1.10 format: compact/dense attribute storage, and chunked datasets of one chunk without a
  // chunk index (the 1.8 format spends a B-tree of ~5 KB on each of the thousands of checksummed
  // adapter tensors). Readable by HDF5 >= 1.10 and the h5py built on it.
  check_status(H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V110, H5F_LIBVER_LATEST), "H5Pset_libver_bounds");
  return fapl;
}

}  // namespace

H5File H5File::create(const std::string& path) {
  silence_hdf5();
  H5Id fapl = file_access(path);
  const hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get());
  if (f < 0) fail("cannot create HDF5 file " + path);
  return H5File(H5Id(f, H5Fclose), path);
}

H5File H5File::open_read_only(const std::string& path) {
  silence_hdf5();
  H5Id fapl = file_access(path);
  std::error_code ec;
  util::require_regular_file(path);  // a folder, a FIFO or a device is named as such
  if (!std::filesystem::is_regular_file(path, ec)) {
    throw Error(path + ": no such file" + (ec && ec != std::errc::no_such_file_or_directory ? " (" + ec.message() + ")" : ""));
  }
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get());
  if (f < 0) {
    const std::string reason = h5_last_error();
    // Something else entirely (a LoRA given where a checkpoint belongs): no talk of truncation.
    char head[9] = {};
    std::ifstream(path, std::ios::binary).read(head, 9);
    if (std::memcmp(head, "\x89HDF\r\n\x1a\n", 8) != 0) {
      throw Error(path + ": not an HDF5 file" +
                      std::string(head[8] == '{' ? " (a safetensors file: an exported LoRA, not a checkpoint)" : ""),
                  "give a checkpoint: checkpoint.dir/checkpoint-<step>.h5");
    }
    throw Error(path + ": not a readable HDF5 file (truncated, corrupt, not HDF5, or locked by a writer" +
                    (reason.empty() ? std::string(")") : ": " + reason + ")"),
                "a checkpoint interrupted while being written stays NAME.h5.tmp and is never used; pick another "
                "checkpoint-<step>.h5. On Lustre/GPFS set HDF5_USE_FILE_LOCKING=FALSE");
  }
  return H5File(H5Id(f, H5Fclose), path);
}

void H5File::close() {
  if (!file_.valid()) return;
  root_.reset();
  if (file_.reset() < 0) fail("writing " + path_ + " (closing it)");
}

}  // namespace sdxl::io
