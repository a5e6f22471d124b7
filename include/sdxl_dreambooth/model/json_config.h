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
  // An int or a list of ints (diffusers accepts either): a list of exactly n values.
  std::vector<std::int64_t> int_or_list(const std::string& key, std::size_t n, std::int64_t fallback) const;

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
