#include "sdxl_dreambooth/model/json_config.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/util/json_error.h"
#include "sdxl_dreambooth/util/regular_file.h"
#include "sdxl_dreambooth/util/strings.h"

#include <cmath>
#include <fstream>

namespace sdxl::model {

JsonConfig JsonConfig::load(const std::filesystem::path& path) {
  util::require_regular_file(path.string());
  std::ifstream in(path);
  if (!in) throw_errno("open", path.string());
  try {
    return JsonConfig(nlohmann::json::parse(in), path.string());
  } catch (const nlohmann::json::exception& e) {
    throw Error("'" + path.string() + "' is not valid JSON: " + util::json_problem(e));
  }
}

JsonConfig::JsonConfig(nlohmann::json json, std::string source) : json_(std::move(json)), source_(std::move(source)) {
  if (!json_.is_object()) throw Error("'" + source_ + "' is not a JSON object");
}

const nlohmann::json* JsonConfig::find(const std::string& key) const {
  auto it = json_.find(key);
  if (it == json_.end() || it->is_null()) return nullptr;
  return &*it;
}

bool JsonConfig::has(const std::string& key) const { return find(key) != nullptr; }

void JsonConfig::bad(const std::string& key, const std::string& expected) const {
  const nlohmann::json* v = find(key);
  throw Error("'" + source_ + "': key '" + key + "' must be " + expected + ", got " + (v ? v->dump() : "null"));
}

void JsonConfig::unsupported(const std::string& key, const std::string& what) const {
  const nlohmann::json* v = find(key);
  throw Error("'" + source_ + "': unsupported " + key + " = " + (v ? v->dump() : "null") + " (" + what + ")");
}

std::int64_t JsonConfig::int_or(const std::string& key, std::int64_t fallback) const {
  const auto* v = find(key);
  if (!v) return fallback;
  if (!v->is_number_integer()) bad(key, "an integer");
  return v->get<std::int64_t>();
}

std::int64_t JsonConfig::require_int(const std::string& key) const {
  if (!find(key)) throw Error("'" + source_ + "': missing key '" + key + "'");
  return int_or(key, 0);
}

double JsonConfig::float_or(const std::string& key, double fallback) const {
  const auto* v = find(key);
  if (!v) return fallback;
  if (!v->is_number()) bad(key, "a number");
  return v->get<double>();
}

std::optional<double> JsonConfig::optional_float(const std::string& key) const {
  if (!find(key)) return std::nullopt;
  return float_or(key, 0.0);
}

bool JsonConfig::bool_or(const std::string& key, bool fallback) const {
  const auto* v = find(key);
  if (!v) return fallback;
  if (!v->is_boolean()) bad(key, "true or false");
  return v->get<bool>();
}

std::string JsonConfig::string_or(const std::string& key, const std::string& fallback) const {
  const auto* v = find(key);
  if (!v) return fallback;
  if (!v->is_string()) bad(key, "a string");
  return v->get<std::string>();
}

std::vector<std::string> JsonConfig::require_string_list(const std::string& key) const {
  const auto* v = find(key);
  if (!v) throw Error("'" + source_ + "': missing key '" + key + "'");
  if (!v->is_array()) bad(key, "a list of strings");
  std::vector<std::string> out;
  for (const auto& e : *v) {
    if (!e.is_string()) bad(key, "a list of strings");
    out.push_back(e.get<std::string>());
  }
  return out;
}

std::vector<std::int64_t> JsonConfig::require_int_list(const std::string& key) const {
  const auto* v = find(key);
  if (!v) throw Error("'" + source_ + "': missing key '" + key + "'");
  if (!v->is_array()) bad(key, "a list of integers");
  std::vector<std::int64_t> out;
  for (const auto& e : *v) {
    if (!e.is_number_integer()) bad(key, "a list of integers");
    out.push_back(e.get<std::int64_t>());
  }
  return out;
}

std::optional<std::vector<double>> JsonConfig::optional_float_list(const std::string& key, std::size_t n) const {
  const auto* v = find(key);
  if (!v) return std::nullopt;
  const std::string expected = "a list of " + std::to_string(n) + " finite numbers";
  if (!v->is_array() || v->size() != n) bad(key, expected);
  std::vector<double> out;
  for (const auto& e : *v) {
    if (!e.is_number() || !std::isfinite(e.get<double>())) bad(key, expected);
    out.push_back(e.get<double>());
  }
  return out;
}

std::vector<std::int64_t> JsonConfig::int_or_list(const std::string& key, std::size_t n, std::int64_t fallback) const {
  const auto* v = find(key);
  if (!v) return std::vector<std::int64_t>(n, fallback);
  if (v->is_number_integer()) return std::vector<std::int64_t>(n, v->get<std::int64_t>());
  std::vector<std::int64_t> out = require_int_list(key);
  if (out.size() != n) bad(key, "an integer or a list of " + std::to_string(n) + " integers (one per block)");
  return out;
}

namespace {

std::string range_text(std::int64_t lo, std::int64_t hi) {
  return "[" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
}

}  // namespace

std::int64_t JsonConfig::int_in(const std::string& key, std::int64_t fallback, std::int64_t lo, std::int64_t hi) const {
  // A size given as null is no size (diffusers would pass None to the constructor), not the default.
  if (auto it = json_.find(key); it != json_.end() && it->is_null()) bad(key, "an integer in " + range_text(lo, hi));
  const std::int64_t v = int_or(key, fallback);
  if (v < lo || v > hi) bad(key, "an integer in " + range_text(lo, hi));
  return v;
}

double JsonConfig::float_in(const std::string& key, double fallback, double lo, double hi, bool lo_exclusive) const {
  if (auto it = json_.find(key); it != json_.end() && it->is_null()) bad(key, "a number");
  const double v = float_or(key, fallback);
  const bool low = lo_exclusive ? !(v > lo) : !(v >= lo);
  if (low || !(v <= hi)) {
    bad(key, std::string("a number in ") + (lo_exclusive ? "(" : "[") + util::format_number(lo) + ", " +
                 util::format_number(hi) + "]");
  }
  return v;
}

std::vector<std::int64_t> JsonConfig::int_list_in(const std::string& key, std::int64_t lo, std::int64_t hi) const {
  std::vector<std::int64_t> out = require_int_list(key);
  for (auto v : out) {
    if (v < lo || v > hi) bad(key, "a list of integers in " + range_text(lo, hi));
  }
  return out;
}

std::vector<std::int64_t> JsonConfig::int_or_list_in(const std::string& key, std::size_t n, std::int64_t fallback,
                                                     std::int64_t lo, std::int64_t hi) const {
  std::vector<std::int64_t> out = int_or_list(key, n, fallback);
  for (auto v : out) {
    if (v < lo || v > hi) bad(key, "an integer or a list of integers in " + range_text(lo, hi));
  }
  return out;
}

void JsonConfig::require(bool ok, const std::string& key, const std::string& rule) const {
  if (ok) return;
  const nlohmann::json* v = find(key);
  throw Error("'" + source_ + "': " + key + " = " + (v ? v->dump() : "null (default)") + ": " + rule);
}

}  // namespace sdxl::model
