// A getenv over a fixed map, for code that takes its environment lookup as a parameter.
#pragma once

#include <map>
#include <string>
#include <utility>

namespace sdxl::test {

inline auto env_of(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> const char* {
    const auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

}  // namespace sdxl::test
