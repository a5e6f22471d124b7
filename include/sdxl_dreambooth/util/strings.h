// Small string helpers shared by configuration, CLI and loaders.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sdxl::util {

std::string join(const std::vector<std::string>& parts, const std::string& sep);
std::vector<std::string> split(const std::string& s, char sep);
std::string trim(std::string_view s);
// ASCII letters lower-cased; other bytes (UTF-8 included) unchanged.
std::string to_lower(std::string_view s);
bool starts_with(std::string_view s, std::string_view prefix);
bool ends_with(std::string_view s, std::string_view suffix);

// Shortest round-trip spelling of a double ("0.0001", "1e-08", "5.0").
std::string format_number(double d);
// printf of one number, e.g. format_with("%.2f", 1.234) == "1.23".
std::string format_with(const char* format, double value);

std::size_t edit_distance(const std::string& a, const std::string& b);

// The candidate nearest to `word`, or "" when none is within a third of its length.
std::string nearest(const std::string& word, const std::vector<std::string>& candidates);

// "1.2 GiB", "340 KiB".
std::string format_bytes(double bytes);

// "[2, 4, 16, 16]": a tensor shape for messages.
std::string shape_string(const std::vector<std::int64_t>& shape);

// Quote for messages: 'x' with control characters and bytes that are not UTF-8 escaped
// (\xNN), cut after 200 bytes ("... (N bytes)").
std::string quoted(std::string_view s);

// Whether `s` is well-formed UTF-8 (no overlong forms, surrogates or values past U+10FFFF).
bool is_valid_utf8(std::string_view s);

}  // namespace sdxl::util
