#include "sdxl_dreambooth/cli/args.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/util/strings.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>

namespace sdxl::cli {

Args::Args(const std::vector<std::string>& argv, std::set<std::string> flags, std::set<std::string> options,
           std::set<std::string> repeated) {
  bool only_positionals = false;
  for (std::size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    // Every option is long (--name); "-h" is the one short alias. "-x" is no argument either
    // (a negative number is a value, read with its option).
    if (!only_positionals && a.size() > 1 && a[0] == '-' && a[1] != '-' && a != "-h" &&
        !std::isdigit(static_cast<unsigned char>(a[1])) && a[1] != '.') {
      throw UsageError("unknown option " + util::quoted(a) + " (options are long: --name)");
    }
    if (only_positionals || !(util::starts_with(a, "--") || a == "-h")) {
      positionals_.push_back(a);
      continue;
    }
    if (a == "--") {
      only_positionals = true;
      continue;
    }
    std::string name = a == "-h" ? "--help" : a;
    std::optional<std::string> inline_value;
    if (auto eq = a.find('='); eq != std::string::npos) {
      name = a.substr(0, eq);
      inline_value = a.substr(eq + 1);
    }
    if (flags.count(name)) {
      if (inline_value) throw UsageError("option " + name + " takes no value, got " + util::quoted(*inline_value));
      flags_seen_.insert(name);
      continue;
    }
    const bool is_option = options.count(name) > 0, is_repeated = repeated.count(name) > 0;
    if (!is_option && !is_repeated) {
      std::vector<std::string> known(flags.begin(), flags.end());
      known.insert(known.end(), options.begin(), options.end());
      known.insert(known.end(), repeated.begin(), repeated.end());
      std::string msg = "unknown option '" + name + "'";
      const std::string near = util::nearest(name, known);
      if (!near.empty()) msg += " (did you mean '" + near + "'?)";
      throw UsageError(msg);
    }
    std::string value;
    if (inline_value) {
      value = *inline_value;
    } else {
      if (i + 1 >= argv.size()) throw UsageError("option " + name + " needs a value");
      // "--prompt --out y": the next option is not the value (write --prompt=--out for that).
      const std::string& next = argv[i + 1];
      const std::string next_name = next.substr(0, next.find('='));
      if (flags.count(next_name) || options.count(next_name) || repeated.count(next_name)) {
        throw UsageError("option " + name + " needs a value, got the option " + util::quoted(next) +
                         " (write " + name + "=VALUE for a value that starts with --)");
      }
      value = argv[++i];
    }
    if (is_repeated) {
      repeated_[name].push_back(value);
    } else {
      if (options_.count(name)) throw UsageError("option " + name + " given twice");
      options_[name] = value;
    }
  }
}

std::optional<std::string> Args::option(const std::string& name) const {
  auto it = options_.find(name);
  if (it == options_.end()) return std::nullopt;
  return it->second;
}

std::string Args::option_or(const std::string& name, const std::string& fallback) const {
  return option(name).value_or(fallback);
}

const std::vector<std::string>& Args::repeated(const std::string& name) const {
  static const std::vector<std::string> kEmpty;
  auto it = repeated_.find(name);
  return it == repeated_.end() ? kEmpty : it->second;
}

std::optional<long long> Args::int_option(const std::string& name) const {
  auto v = option(name);
  if (!v) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const long long n = std::strtoll(v->c_str(), &end, 10);
  if (v->empty() || *end != '\0' || errno) throw UsageError(name + ": expected an integer, got " + util::quoted(*v));
  return n;
}

std::optional<double> Args::float_option(const std::string& name) const {
  auto v = option(name);
  if (!v) return std::nullopt;
  char* end = nullptr;
  const double d = std::strtod(v->c_str(), &end);
  // Decimal only: strtod also reads hexadecimal ("0x10" is 16), which nobody means here.
  const bool hex = v->find_first_of("xX") != std::string::npos;
  if (v->empty() || *end != '\0' || hex) throw UsageError(name + ": expected a number, got " + util::quoted(*v));
  return d;
}

}  // namespace sdxl::cli
