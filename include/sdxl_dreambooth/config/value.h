// A configuration value: unset, or one of the types a schema key can declare.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace sdxl::config {

enum class ValueType { kBool, kInt, kFloat, kString, kStringList };

using StringList = std::vector<std::string>;
using Value = std::variant<std::monostate, bool, std::int64_t, double, std::string, StringList>;

const char* type_name(ValueType type);

inline bool is_set(const Value& v) { return !std::holds_alternative<std::monostate>(v); }

// TOML spelling of a value ("unset" for an unset one), used by --print-config, the
// config reference and the /config dataset of checkpoints.
std::string to_toml(const Value& v);

}  // namespace sdxl::config
