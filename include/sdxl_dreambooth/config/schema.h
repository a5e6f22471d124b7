// The configuration schema: every key of the TOML file declared once, with its type,
// default, allowed range or choices and one line of help. Parsing, validation, --help,
// --print-config and docs/config-reference.md are all driven from this table.
#pragma once

#include "sdxl_dreambooth/config/run_config.h"
#include "sdxl_dreambooth/config/value.h"

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace sdxl::config {

struct KeySpec {
  std::string key;             // "section.name"
  ValueType type;
  Value default_value;         // std::monostate: no default (optional or required)
  std::string help;
  bool required = false;
  std::optional<double> min;   // numbers: inclusive bounds
  std::optional<double> max;
  bool min_exclusive = false;  // e.g. learning_rate > 0
  std::vector<std::string> choices;  // strings (and each list element) must be one of these
  std::string unset_means;     // what an unset optional key means, for help and docs
  bool allow_empty_list = true;
  std::string path;            // strings naming a file system path: what it names ("a folder path"); '' is refused
  // The RunConfig member the key is bound to (schema.cpp's KEY macro): `read` gives its value
  // (unset for an empty optional), `write` stores a value of `type` there.
  std::function<Value(const RunConfig&)> read;
  std::function<void(RunConfig&, const Value&)> write;

  std::string section() const { return key.substr(0, key.find('.')); }
  std::string name() const { return key.substr(key.find('.') + 1); }
  // "an integer >= 1", "one of constant, linear", used in error messages and docs.
  std::string expectation() const;
};

struct SectionSpec {
  std::string name;
  std::string help;
};

// A key of a [[data.subsets]] table: it has the type, range and help of data.<name> and is
// bound to DataSubset::<name>.
struct SubsetKeySpec {
  std::string name;
  const KeySpec* data_key;  // data.<name>
  std::function<Value(const DataSubset&)> read;
  std::function<void(DataSubset&, const Value&)> write;
};
const std::vector<SubsetKeySpec>& subset_schema();
const SubsetKeySpec* find_subset_key(const std::string& name);

const std::vector<SectionSpec>& sections();
const std::vector<KeySpec>& schema();

// nullptr when the key is not in the schema.
const KeySpec* find_key(const std::string& key);

// The schema key closest to `key` by edit distance, for "did you mean" hints; empty
// when nothing is reasonably close.
std::string nearest_key(const std::string& key);
std::string nearest_section(const std::string& section);

}  // namespace sdxl::config
