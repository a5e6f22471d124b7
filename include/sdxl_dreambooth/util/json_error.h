// What a JSON parser error says, without nlohmann's "[json.exception.parse_error.101] parse
// error at" prefix: "line 1, column 13: syntax error while parsing value - unexpected end of
// input; ...", for messages that name the file themselves.
#pragma once

#include <exception>
#include <string>

namespace sdxl::util {

inline std::string json_problem(const std::exception& e) {
  std::string s = e.what();
  if (s.rfind("[json.exception.", 0) == 0) {
    const auto end = s.find("] ");
    if (end != std::string::npos) s = s.substr(end + 2);
  }
  const std::string prefix = "parse error at ";
  if (s.rfind(prefix, 0) == 0) s = s.substr(prefix.size());
  return s;
}

}  // namespace sdxl::util
