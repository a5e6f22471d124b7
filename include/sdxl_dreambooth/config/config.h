// A validated configuration: every schema key with its value and where the value came
// from (default, file:line, or a --set argument).
#pragma once

#include "sdxl_dreambooth/config/run_config.h"
#include "sdxl_dreambooth/config/value.h"

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace sdxl::config {

class Config {
 public:
  // Typed access. Asking for a key that is not in the schema, or with the wrong type,
  // is a programming error and throws std::logic_error.
  bool has(const std::string& key) const;  // set, by default or explicitly
  bool get_bool(const std::string& key) const;
  std::int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;
  const std::string& get_string(const std::string& key) const;
  const StringList& get_list(const std::string& key) const;
  std::optional<bool> get_optional_bool(const std::string& key) const;
  std::optional<std::int64_t> get_optional_int(const std::string& key) const;
  std::optional<double> get_optional_float(const std::string& key) const;
  std::optional<std::string> get_optional_string(const std::string& key) const;

  // Every key in its RunConfig member: what the program reads (outside src/config/ nothing
  // else is read).
  RunConfig typed() const;

  const Value& value(const std::string& key) const;
  const std::string& origin(const std::string& key) const;

  // The effective configuration as a TOML document (every key; unset ones commented).
  std::string to_toml() const;
  // Key | value | source, one row per key, for the start-of-run log.
  std::string to_table() const;

  void set(const std::string& key, Value value, std::string origin);

  // [[data.subsets]] tables, in file order: each key set there with its value and origin.
  struct Subset {
    std::string origin;  // file:line of the table
    std::map<std::string, Value> values;
    std::map<std::string, std::string> origins;
  };
  const std::vector<Subset>& subsets() const { return subsets_; }
  void add_subset(Subset subset) { subsets_.push_back(std::move(subset)); }
  void set_subset_value(std::size_t i, const std::string& name, Value value, std::string origin) {
    subsets_.at(i).values[name] = std::move(value);
    subsets_.at(i).origins[name] = std::move(origin);
  }

 private:
  std::map<std::string, Value> values_;
  std::map<std::string, std::string> origins_;
  std::vector<Subset> subsets_;
};

// Parse, type-check and validate a configuration. All problems are collected and thrown
// as one UsageError, one line each, naming file:line (or the --set argument), the key,
// what was given and what is expected.
Config load_config_file(const std::string& path, const std::vector<std::string>& overrides = {});
Config load_config_text(const std::string& text, const std::string& source_name,
                        const std::vector<std::string>& overrides = {});

// Markdown reference of every section and key, generated from the schema.
std::string config_reference_markdown();
// Plain-text key list for `--help`.
std::string config_help_text();

}  // namespace sdxl::config
