// Typed reads from a diffusers/transformers config.json with diffusers' defaults for
// absent keys and errors naming the file and the key.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace sdxl::model {

// Sizes a real SDXL-family model stays far below (SDXL: 2048 channels at most, 20 heads, 10
// transformer layers per block): larger values in a config.json are refused before the
// networks are built, instead of exhausting the host.
inline constexpr std::int64_t kMaxChannels = 16384;
inline constexpr std::int64_t kMaxBlocks = 8;
inline constexpr std::int64_t kMaxLayers = 64;
inline constexpr std::int64_t kMaxHeads = 1024;
inline constexpr std::int64_t kMaxGroups = 1024;
inline constexpr std::int64_t kMaxSampleSize = 65536;

class JsonConfig {
 public:
  static JsonConfig load(const std::filesystem::path& path);
  JsonConfig(nlohmann::json json, std::string source);

  bool has(const std::string& key) const;  // present and not null
  std::int64_t int_or(const std::string& key, std::int64_t fallback) const;
  std::int64_t require_int(const std::string& key) const;
  double float_or(const std::string& key, double fallback) const;
  std::optional<double> optional_float(const std::string& key) const;
  bool bool_or(const std::string& key, bool fallback) const;
  std::string string_or(const std::string& key, const std::string& fallback) const;
  std::vector<std::string> require_string_list(const std::string& key) const;
  std::vector<std::int64_t> require_int_list(const std::string& key) const;
  // A list of exactly n finite numbers, or nothing when absent or null.
  std::optional<std::vector<double>> optional_float_list(const std::string& key, std::size_t n) const;
  // An int or a list of ints (diffusers accepts either): a list of exactly n values.
  std::vector<std::int64_t> int_or_list(const std::string& key, std::size_t n, std::int64_t fallback) const;

  // The same, refused outside [lo, hi] (each element of a list), naming the file, key, value
  // and the range: what the networks are built from is checked before anything is allocated.
  std::int64_t int_in(const std::string& key, std::int64_t fallback, std::int64_t lo, std::int64_t hi) const;
  double float_in(const std::string& key, double fallback, double lo, double hi, bool lo_exclusive = false) const;
  std::vector<std::int64_t> int_list_in(const std::string& key, std::int64_t lo, std::int64_t hi) const;
  std::vector<std::int64_t> int_or_list_in(const std::string& key, std::size_t n, std::int64_t fallback,
                                           std::int64_t lo, std::int64_t hi) const;
  // Throws naming the file, the key and `rule` unless `ok` (rules across keys).
  void require(bool ok, const std::string& key, const std::string& rule) const;

  // Unsupported option: throws naming the file and key.
  [[noreturn]] void unsupported(const std::string& key, const std::string& what) const;
  const std::string& source() const { return source_; }
  const nlohmann::json& json() const { return json_; }

 private:
  const nlohmann::json* find(const std::string& key) const;
  [[noreturn]] void bad(const std::string& key, const std::string& expected) const;

  nlohmann::json json_;
  std::string source_;
};

}  // namespace sdxl::model
