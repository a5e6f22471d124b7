#include "sdxl_dreambooth/model/token_embeddings_file.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/io/safetensors_torch.h"
#include "sdxl_dreambooth/util/json_text.h"
#include "sdxl_dreambooth/util/regular_file.h"
#include "sdxl_dreambooth/util/strings.h"

#include <nlohmann/json.hpp>

#include <cstring>
#include <fstream>
#include <optional>

namespace sdxl::model {
namespace {

constexpr char kAbstractionsKey[] = "sdxl_dreambooth.token_abstractions";

std::string abstractions_json(const text::TokenAbstractions& a) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  for (const auto& [name, tokens] : a.entries()) j[name] = tokens;
  return util::json_text(j);
}

// Our metadata, or nullopt when the file has none.
std::optional<text::TokenAbstractions> read_abstractions(const io::SafetensorsFile& f) {
  const auto it = f.metadata().find(kAbstractionsKey);
  if (it == f.metadata().end()) return std::nullopt;
  const auto j = nlohmann::ordered_json::parse(it->second, nullptr, /*allow_exceptions=*/false);
  std::vector<text::TokenAbstractions::Entry> entries;
  bool ok = j.is_object() && !j.empty();
  for (auto e = j.begin(); ok && e != j.end(); ++e) {
    ok = e.value().is_array();
    std::vector<std::string> tokens;
    for (const auto& t : e.value()) {
      ok = ok && t.is_string();
      if (ok) tokens.push_back(t.get<std::string>());
    }
    entries.emplace_back(e.key(), std::move(tokens));
  }
  const std::string hint = "was the file edited? Without that entry the tokens are <s0>, <s1>, ...";
  if (!ok) {
    throw Error("'" + f.path() + "': metadata " + kAbstractionsKey +
                    " is not a JSON object of abstraction -> list of token strings",
                hint);
  }
  try {
    return text::TokenAbstractions::checked(std::move(entries));
  } catch (const Error& e) {
    throw Error("'" + f.path() + "': metadata " + kAbstractionsKey + ": " + e.what(), hint);
  }
}

torch::Tensor rows(const std::shared_ptr<const io::SafetensorsFile>& f, const char* name) {
  const io::TensorInfo* info = f->find(name);
  if (!info) {
    throw Error("'" + f->path() + "' has no tensor \"" + name + "\"",
                "expected pivotal tuning's embeddings: \"clip_l\" for text_encoder and \"clip_g\" for text_encoder_2");
  }
  if (info->dtype != io::DType::kF32 && info->dtype != io::DType::kF16 && info->dtype != io::DType::kBF16 &&
      info->dtype != io::DType::kF64) {
    throw Error("'" + f->path() + "': \"" + name + "\" is " + io::dtype_name(info->dtype) +
                "; embeddings are floating point (F32, F16, BF16 or F64)");
  }
  torch::Tensor t = io::tensor_view(f, *info).to(torch::kFloat).clone();
  if (t.dim() != 2 || t.size(0) < 1) {
    throw Error("'" + f->path() + "': \"" + name + "\" has shape " + util::shape_string(t.sizes().vec()) +
                "; expected [tokens, hidden size]");
  }
  if (!torch::isfinite(t).all().item<bool>()) {
    throw Error("'" + f->path() + "': \"" + name + "\" has non-finite values");
  }
  return t;
}

// An HDF5 checkpoint given where an embeddings file belongs: say how to get one from it.
void refuse_checkpoint(const std::string& path) {
  util::require_regular_file(path);
  std::ifstream in(path, std::ios::binary);
  char magic[8] = {};
  if (!in.read(magic, sizeof magic)) return;  // too short or unreadable: the safetensors reader says why
  if (std::memcmp(magic, "\x89HDF\r\n\x1a\n", 8) == 0) {
    throw Error("'" + path + "' is an HDF5 checkpoint, not an embeddings file",
                     "write its embeddings with: sdxl-dreambooth export " + path +
                         " --out LORA.safetensors --embeddings EMB.safetensors");
  }
}

}  // namespace

void write_token_embeddings(const std::string& path, const TokenEmbeddings& e,
                            const std::map<std::string, std::string>& metadata) {
  std::map<std::string, std::string> meta = metadata;
  meta[kAbstractionsKey] = abstractions_json(e.abstractions);
  io::write_safetensors(path, {{"clip_l", e.clip_l.to(torch::kCPU, torch::kFloat).contiguous()},
                               {"clip_g", e.clip_g.to(torch::kCPU, torch::kFloat).contiguous()}},
                        meta);
}

TokenEmbeddings read_token_embeddings(const std::string& path) {
  refuse_checkpoint(path);
  const auto f = io::SafetensorsFile::open(path);
  TokenEmbeddings e;
  e.clip_l = rows(f, "clip_l");
  e.clip_g = rows(f, "clip_g");
  if (e.clip_l.size(0) != e.clip_g.size(0)) {
    throw Error("'" + path + "': \"clip_l\" has " + std::to_string(e.clip_l.size(0)) + " rows, \"clip_g\" " +
                std::to_string(e.clip_g.size(0)) + "; both hold one row per new token");
  }
  const std::int64_t n = e.clip_l.size(0);
  if (auto a = read_abstractions(*f)) {
    if (static_cast<std::int64_t>(a->tokens().size()) != n) {
      throw Error("'" + path + "': metadata " + kAbstractionsKey + " names " + std::to_string(a->tokens().size()) +
                  " tokens, the tensors have " + std::to_string(n) + " rows");
    }
    // Row k is the token <sk> (diffusers' naming): a name that is not is a damaged file.
    const std::vector<std::string> tokens = a->tokens();
    for (std::int64_t k = 0; k < n; ++k) {
      const std::string& token = tokens[static_cast<std::size_t>(k)];
      if (token != "<s" + std::to_string(k) + ">") {
        throw Error("'" + path + "': metadata " + kAbstractionsKey + " names " + util::quoted(token) + " for row " +
                    std::to_string(k) + "; the rows are the tokens <s0> to <s" + std::to_string(n - 1) + ">, in order");
      }
    }
    e.abstractions = std::move(*a);
  } else {
    std::vector<std::string> tokens;
    for (std::int64_t k = 0; k < n; ++k) tokens.push_back("<s" + std::to_string(k) + ">");
    // No abstraction to rewrite: prompts name the tokens themselves, as with diffusers.
    e.abstractions = text::TokenAbstractions({{"", tokens}});
  }
  return e;
}

}  // namespace sdxl::model
