#include "sdxl_dreambooth/model/model_fingerprint.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/model/model_location.h"
#include "sdxl_dreambooth/model/weight_source.h"
#include "sdxl_dreambooth/util/regular_file.h"
#include "sdxl_dreambooth/util/sha256.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <sstream>

namespace fs = std::filesystem;

namespace sdxl::model {
namespace {

bool is_sha256_hex(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(c) && !std::isupper(c); });
}

WeightFileFingerprint fingerprint_file(const fs::path& path, const fs::path& root) {
  WeightFileFingerprint f;
  // Lexically: resolving symlinks would turn HF cache paths into blobs/<hash>.
  f.file = path.lexically_relative(root).generic_string();
  if (f.file.empty() || f.file.rfind("..", 0) == 0) f.file = path.generic_string();
  std::error_code ec;
  f.bytes = fs::file_size(path, ec);
  if (ec) throw Error("cannot read the size of " + path.string() + ": " + ec.message());
  // HF cache: snapshots/<rev>/unet/x.safetensors -> ../../blobs/<sha256 of the content>.
  if (fs::is_symlink(path, ec)) {
    const std::string target = fs::read_symlink(path, ec).filename().string();
    if (!ec && is_sha256_hex(target)) {
      f.sha256 = target;
      return f;
    }
  }
  f.sha256 = sha256_file(path.string());
  return f;
}

}  // namespace

std::string WeightFileFingerprint::to_line() const {
  return sha256 + " " + std::to_string(bytes) + " " + file;
}

std::optional<WeightFileFingerprint> WeightFileFingerprint::from_line(const std::string& line) {
  std::istringstream in(line);
  WeightFileFingerprint f;
  if (!(in >> f.sha256 >> f.bytes)) return std::nullopt;
  std::getline(in >> std::ws, f.file);
  if (f.file.empty() || !is_sha256_hex(f.sha256)) return std::nullopt;
  return f;
}

std::uint64_t ModelFingerprint::total_bytes() const {
  std::uint64_t n = 0;
  for (const auto& f : files) n += f.bytes;
  return n;
}

std::string sha256_file(const std::string& path) {
  util::require_regular_file(path);
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) throw_errno("open for checksum", path);
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) throw Error("OpenSSL: cannot start SHA-256");
  std::vector<unsigned char> buf(1u << 20);  // also called per training image (data.cache_dir)
  for (;;) {
    const std::size_t n = std::fread(buf.data(), 1, buf.size(), f.get());
    if (n > 0 && EVP_DigestUpdate(ctx.get(), buf.data(), n) != 1) throw Error("OpenSSL: SHA-256 update failed");
    if (n < buf.size()) {
      if (std::ferror(f.get())) throw_errno("read", path);
      break;
    }
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), digest, &len) != 1) throw Error("OpenSSL: SHA-256 final failed");
  return util::to_hex(digest, len);
}

ModelFingerprint fingerprint_pipeline(const std::string& spec, const std::string& revision,
                                      const std::optional<std::string>& variant,
                                      const std::optional<std::string>& vae) {
  ModelFingerprint fp;
  fp.spec = spec;
  const PipelineFolder folder = open_pipeline(spec, revision);
  fp.root = folder.root.string();
  for (const char* component : {"unet", "vae", "text_encoder", "text_encoder_2"}) {
    fs::path dir = folder.component(component);
    fs::path root = folder.root;
    if (std::string(component) == "vae" && vae) {
      dir = resolve_component_dir(*vae, revision, "vae");
      root = dir.parent_path();
    }
    for (const auto& file : WeightSource::open_component(dir, variant).files()) {
      fp.files.push_back(fingerprint_file(file, root));
    }
  }
  return fp;
}

std::string fingerprint_difference(const std::vector<WeightFileFingerprint>& a,
                                   const std::vector<WeightFileFingerprint>& b) {
  std::map<std::string, const WeightFileFingerprint*> by_file;
  for (const auto& f : b) by_file[f.file] = &f;
  for (const auto& f : a) {
    auto it = by_file.find(f.file);
    if (it == by_file.end()) return f.file + " is not part of the other model";
    if (it->second->bytes != f.bytes || it->second->sha256 != f.sha256) {
      return f.file + " differs (" + std::to_string(f.bytes) + " bytes, sha256 " + f.sha256.substr(0, 12) +
             "... vs " + std::to_string(it->second->bytes) + " bytes, sha256 " + it->second->sha256.substr(0, 12) +
             "...)";
    }
    by_file.erase(it);
  }
  if (!by_file.empty()) return by_file.begin()->first + " is not part of the other model";
  return "";
}

}  // namespace sdxl::model
