// JSON text of a value that may hold strings from the file system (paths, names) which are not
// UTF-8: nlohmann's dump() throws on those; here each invalid byte becomes U+FFFD, so metadata
// and `inspect --json` stay valid JSON. Never for data that must round-trip byte for byte.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace sdxl::util {

inline std::string json_text(const nlohmann::json& j, int indent = -1) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace sdxl::util
