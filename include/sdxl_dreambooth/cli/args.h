// A small argument parser for the subcommands: --flag, --key value, --key=value,
// repeatable options and positionals. Unknown options are UsageErrors with a suggestion.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace sdxl::cli {

class Args {
 public:
  // `flags` take no value; `options` take one; `repeated` may appear many times.
  Args(const std::vector<std::string>& argv, std::set<std::string> flags, std::set<std::string> options,
       std::set<std::string> repeated = {});

  bool flag(const std::string& name) const { return flags_seen_.count(name) > 0; }
  std::optional<std::string> option(const std::string& name) const;
  std::string option_or(const std::string& name, const std::string& fallback) const;
  const std::vector<std::string>& repeated(const std::string& name) const;
  const std::vector<std::string>& positionals() const { return positionals_; }

  // Numeric options with the option named in the error.
  std::optional<long long> int_option(const std::string& name) const;
  std::optional<double> float_option(const std::string& name) const;

 private:
  std::set<std::string> flags_seen_;
  std::map<std::string, std::string> options_;
  std::map<std::string, std::vector<std::string>> repeated_;
  std::vector<std::string> positionals_;
};

}  // namespace sdxl::cli
