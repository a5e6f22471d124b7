#include "sdxl_dreambooth/io/safetensors_torch.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/util/json_text.h"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace sdxl::io {

torch::Dtype to_torch_dtype(DType dtype) {
  switch (dtype) {
    case DType::kF64: return torch::kFloat64;
    case DType::kF32: return torch::kFloat32;
    case DType::kF16: return torch::kFloat16;
    case DType::kBF16: return torch::kBFloat16;
    case DType::kI64: return torch::kInt64;
    case DType::kI32: return torch::kInt32;
    case DType::kI16: return torch::kInt16;
    case DType::kI8: return torch::kInt8;
    case DType::kU8: return torch::kUInt8;
    case DType::kBool: return torch::kBool;
  }
  throw Error("unsupported safetensors dtype");
}

DType from_torch_dtype(torch::Dtype dtype) {
  switch (dtype) {
    case torch::kFloat64: return DType::kF64;
    case torch::kFloat32: return DType::kF32;
    case torch::kFloat16: return DType::kF16;
    case torch::kBFloat16: return DType::kBF16;
    case torch::kInt64: return DType::kI64;
    case torch::kInt32: return DType::kI32;
    case torch::kInt16: return DType::kI16;
    case torch::kInt8: return DType::kI8;
    case torch::kUInt8: return DType::kU8;
    case torch::kBool: return DType::kBool;
    default: break;
  }
  throw Error(std::string("cannot store dtype ") + c10::toString(dtype) + " in safetensors");
}

torch::Tensor tensor_view(const std::shared_ptr<const SafetensorsFile>& file, const TensorInfo& info) {
  const auto dtype = to_torch_dtype(info.dtype);
  const std::uint8_t* ptr = file->data(info);
  const auto options = torch::TensorOptions().dtype(dtype);
  if (info.end == info.begin) return torch::empty(info.shape, options);
  if (reinterpret_cast<std::uintptr_t>(ptr) % dtype_size(info.dtype) != 0) {
    torch::Tensor t = torch::empty(info.shape, options);
    std::memcpy(t.data_ptr(), ptr, info.end - info.begin);
    return t;
  }
  // The deleter holds the file (and its mapping) alive as long as the tensor lives.
  auto keep = std::make_shared<std::shared_ptr<const SafetensorsFile>>(file);
  return torch::from_blob(const_cast<std::uint8_t*>(ptr), info.shape, [keep](void*) mutable { keep.reset(); },
                          options);
}

void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> contiguous;
  std::uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (header.contains(name)) throw Error("write_safetensors '" + path + "': duplicate tensor name '" + name + "'");
    torch::Tensor t = tensor.detach().to(torch::kCPU).contiguous();
    const std::uint64_t bytes = static_cast<std::uint64_t>(t.numel()) * t.element_size();
    header[name] = {{"dtype", dtype_name(from_torch_dtype(t.scalar_type()))},
                    {"shape", t.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    contiguous.push_back(t);
  }
  std::string text = util::json_text(header);
  // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
  while ((8 + text.size()) % 8 != 0) text += ' ';

  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw_errno("open for writing", tmp);
  auto write = [&](const void* p, std::size_t n) {
    if (n && std::fwrite(p, 1, n, f) != n) {
      std::fclose(f);
      std::remove(tmp.c_str());
      throw_errno("write", tmp);
    }
  };
  std::uint8_t len[8];
  std::uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<std::uint8_t>(n >> (8 * i));
  write(len, 8);
  write(text.data(), text.size());
  for (const auto& t : contiguous) write(t.data_ptr(), static_cast<std::size_t>(t.numel()) * t.element_size());
  if (std::fflush(f) != 0 || ::fsync(fileno(f)) != 0) {
    std::fclose(f);
    std::remove(tmp.c_str());
    throw_errno("flush", tmp);
  }
  if (std::fclose(f) != 0) throw_errno("close", tmp);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw_errno("rename to " + path + " from", tmp);
}

}  // namespace sdxl::io
