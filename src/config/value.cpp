#include "sdxl_dreambooth/config/value.h"

#include "sdxl_dreambooth/util/strings.h"

namespace sdxl::config {
namespace {

std::string toml_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

}  // namespace

std::string to_toml(const Value& v) {
  struct Visitor {
    std::string operator()(std::monostate) const { return "unset"; }
    std::string operator()(bool b) const { return b ? "true" : "false"; }
    std::string operator()(std::int64_t i) const { return std::to_string(i); }
    std::string operator()(double d) const { return util::format_number(d); }
    std::string operator()(const std::string& s) const { return toml_string(s); }
    std::string operator()(const StringList& l) const {
      std::vector<std::string> parts;
      for (const auto& s : l) parts.push_back(toml_string(s));
      return "[" + util::join(parts, ", ") + "]";
    }
  };
  return std::visit(Visitor{}, v);
}

}  // namespace sdxl::config
