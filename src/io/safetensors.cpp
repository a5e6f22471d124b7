#include "sdxl_dreambooth/io/safetensors.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/util/json_error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <limits>
#include <set>

namespace sdxl::io {

namespace {

struct DTypeName {
  DType dtype;
  const char* name;
  std::size_t size;
};
constexpr DTypeName kDTypes[] = {
    {DType::kF64, "F64", 8}, {DType::kF32, "F32", 4}, {DType::kF16, "F16", 2}, {DType::kBF16, "BF16", 2},
    {DType::kI64, "I64", 8}, {DType::kI32, "I32", 4}, {DType::kI16, "I16", 2}, {DType::kI8, "I8", 1},
    {DType::kU8, "U8", 1},   {DType::kBool, "BOOL", 1},
};

// The reference implementation refuses headers over 100 MB; so do we, before parsing.
constexpr std::uint64_t kMaxHeader = 100u * 1000u * 1000u;

}  // namespace

bool parse_dtype(const std::string& name, DType* out) {
  for (const auto& d : kDTypes) {
    if (name == d.name) {
      *out = d.dtype;
      return true;
    }
  }
  return false;
}

const char* dtype_name(DType dtype) {
  for (const auto& d : kDTypes) {
    if (d.dtype == dtype) return d.name;
  }
  return "?";
}

std::size_t dtype_size(DType dtype) {
  for (const auto& d : kDTypes) {
    if (d.dtype == dtype) return d.size;
  }
  return 0;
}

std::uint64_t TensorInfo::numel() const {
  std::uint64_t n = 1;
  for (auto s : shape) n *= static_cast<std::uint64_t>(s);
  return n;
}

std::shared_ptr<const SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile(std::make_unique<MappedFile>(path)));
  f->parse();
  return f;
}

std::shared_ptr<const SafetensorsFile> SafetensorsFile::from_bytes(std::string label, std::string bytes) {
  std::shared_ptr<SafetensorsFile> f(
      new SafetensorsFile(std::make_unique<MappedFile>(std::move(label), std::move(bytes))));
  f->parse();
  return f;
}

SafetensorsFile::SafetensorsFile(std::unique_ptr<MappedFile> file) : file_(std::move(file)) {}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

namespace {

[[noreturn]] void corrupt(const std::string& path, const std::string& what) {
  throw Error("safetensors file '" + path + "': " + what, "the file is corrupt or not a safetensors file; "
                                                         "re-download or re-export it");
}

// Duplicate names are invisible in a parsed JSON object (the last one wins), so they are
// caught while parsing.
nlohmann::json parse_header(const std::string& path, const char* header, std::uint64_t header_len) {
  std::set<std::string> seen;
  std::string duplicate;
  nlohmann::json::parser_callback_t on_event = [&](int depth, nlohmann::json::parse_event_t event,
                                                   nlohmann::json& parsed) {
    if (event == nlohmann::json::parse_event_t::key && depth == 1 && parsed.is_string()) {
      const auto& name = parsed.get_ref<const std::string&>();
      if (!seen.insert(name).second && duplicate.empty()) duplicate = name;
    }
    return true;
  };
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(header, header + header_len, on_event);
  } catch (const nlohmann::json::exception& e) {
    corrupt(path, std::string("malformed JSON header: ") + util::json_problem(e));
  }
  if (!duplicate.empty()) corrupt(path, "tensor '" + duplicate + "' appears twice in the header");
  if (!root.is_object()) corrupt(path, "the JSON header is not an object");
  return root;
}

// One tensor's header entry: its dtype, shape and byte range, checked against each other and
// the data area.
TensorInfo parse_entry(const std::string& path, const std::string& name, const nlohmann::json& entry,
                       std::uint64_t data_size) {
  const std::string where = "tensor '" + name + "'";
  auto fail = [&](const std::string& what) { corrupt(path, where + ": " + what); };
  if (!entry.is_object()) fail("entry is not an object");
  auto dtype_it = entry.find("dtype");
  auto shape_it = entry.find("shape");
  auto off_it = entry.find("data_offsets");
  if (dtype_it == entry.end() || !dtype_it->is_string()) fail("missing or non-string 'dtype'");
  if (shape_it == entry.end() || !shape_it->is_array()) fail("missing or non-array 'shape'");
  if (off_it == entry.end() || !off_it->is_array() || off_it->size() != 2) fail("'data_offsets' must be [begin, end]");
  TensorInfo info;
  info.name = name;
  const std::string dtype = dtype_it->get<std::string>();
  if (!parse_dtype(dtype, &info.dtype)) fail("unknown dtype '" + dtype + "'");
  std::uint64_t numel = 1;
  for (const auto& dim : *shape_it) {
    if (!dim.is_number_unsigned()) fail("shape entries must be non-negative integers");
    const std::uint64_t d = dim.get<std::uint64_t>();
    if (d > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) ||
        (d != 0 && numel > std::numeric_limits<std::uint64_t>::max() / d)) {
      fail("shape overflows");
    }
    numel *= d;
    info.shape.push_back(static_cast<std::int64_t>(d));
  }
  for (const auto& off : *off_it) {
    if (!off.is_number_unsigned()) fail("data_offsets must be non-negative integers");
  }
  info.begin = (*off_it)[0].get<std::uint64_t>();
  info.end = (*off_it)[1].get<std::uint64_t>();
  if (info.begin > info.end || info.end > data_size) {
    fail("data_offsets [" + std::to_string(info.begin) + ", " + std::to_string(info.end) +
         "] outside the data area of " + std::to_string(data_size) + " bytes" +
         (info.begin <= info.end ? " (file truncated?)" : ""));
  }
  const std::size_t elem = dtype_size(info.dtype);
  if (numel > std::numeric_limits<std::uint64_t>::max() / elem || numel * elem != info.end - info.begin) {
    fail("shape × dtype size is " + std::to_string(numel) + " × " + std::to_string(elem) +
         " bytes, but data_offsets span " + std::to_string(info.end - info.begin) + " bytes");
  }
  return info;
}

// The data area must be covered exactly: sorted by offset, each tensor starts where the
// previous one ends (no overlap, no hole), the last one ends at the end of the file.
void check_data_coverage(const std::string& path, const std::vector<TensorInfo>& tensors, std::uint64_t data_size) {
  std::vector<const TensorInfo*> order;
  for (const auto& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  std::uint64_t expected = 0;
  for (const TensorInfo* t : order) {
    if (t->begin < expected) corrupt(path, "tensor '" + t->name + "' overlaps the tensor before it in the data area");
    if (t->begin > expected) {
      corrupt(path, "tensor '" + t->name + "' starts at byte " + std::to_string(t->begin) +
                        ", leaving a hole after byte " + std::to_string(expected));
    }
    expected = t->end;
  }
  if (expected != data_size) {
    corrupt(path, "tensors cover " + std::to_string(expected) + " of the " + std::to_string(data_size) +
                      " bytes of the data area (trailing bytes or truncated file)");
  }
}

}  // namespace

void SafetensorsFile::parse() {
  const std::string& path = file_->path();
  auto fail = [&](const std::string& what) { corrupt(path, what); };
  const std::size_t size = file_->size();
  if (size < 8) fail("file is " + std::to_string(size) + " bytes, too short for the 8-byte header length");
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | file_->data()[i];
  if (header_len > kMaxHeader) fail("header length " + std::to_string(header_len) + " exceeds the 100 MB limit");
  if (header_len > size - 8) {
    fail("header length " + std::to_string(header_len) + " runs past the end of the file (" + std::to_string(size) +
         " bytes; truncated?)");
  }
  data_start_ = file_->data() + 8 + header_len;
  const std::uint64_t data_size = size - 8 - header_len;
  const nlohmann::json root = parse_header(path, reinterpret_cast<const char*>(file_->data() + 8), header_len);
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& entry = it.value();
    if (name == "__metadata__") {
      if (!entry.is_object()) fail("__metadata__ is not an object of strings");
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string()) fail("__metadata__['" + m.key() + "'] is not a string");
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    index_[name] = tensors_.size();
    tensors_.push_back(parse_entry(path, name, entry, data_size));
  }
  check_data_coverage(path, tensors_, data_size);
}

}  // namespace sdxl::io
