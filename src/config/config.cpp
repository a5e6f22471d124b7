#include "sdxl_dreambooth/config/config.h"

#include "sdxl_dreambooth/config/schema.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/text/token_abstractions.h"
#include "sdxl_dreambooth/util/regular_file.h"
#include "sdxl_dreambooth/util/strings.h"

#include <toml++/toml.h>

#include <algorithm>
#include <array>

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <fstream>
#include <functional>
#include <sstream>

namespace sdxl::config {

// ---------------------------------------------------------------- typed access

namespace {

const KeySpec& spec_or_throw(const std::string& key) {
  const KeySpec* spec = find_key(key);
  if (!spec) throw std::logic_error("config key '" + key + "' is not in the schema");
  return *spec;
}

template <typename T>
const T& typed_value(const std::map<std::string, Value>& values, const std::string& key) {
  spec_or_throw(key);
  auto it = values.find(key);
  if (it == values.end() || !is_set(it->second)) {
    throw std::logic_error("config key '" + key + "' is unset; use has() or get_optional_*()");
  }
  const T* v = std::get_if<T>(&it->second);
  if (!v) throw std::logic_error("config key '" + key + "' read with the wrong type");
  return *v;
}

}  // namespace

bool Config::has(const std::string& key) const {
  spec_or_throw(key);
  auto it = values_.find(key);
  return it != values_.end() && is_set(it->second);
}
bool Config::get_bool(const std::string& key) const { return typed_value<bool>(values_, key); }
std::int64_t Config::get_int(const std::string& key) const { return typed_value<std::int64_t>(values_, key); }
double Config::get_float(const std::string& key) const { return typed_value<double>(values_, key); }
const std::string& Config::get_string(const std::string& key) const { return typed_value<std::string>(values_, key); }
const StringList& Config::get_list(const std::string& key) const { return typed_value<StringList>(values_, key); }

std::optional<bool> Config::get_optional_bool(const std::string& key) const {
  return has(key) ? std::optional<bool>(get_bool(key)) : std::nullopt;
}
std::optional<std::int64_t> Config::get_optional_int(const std::string& key) const {
  return has(key) ? std::optional<std::int64_t>(get_int(key)) : std::nullopt;
}
std::optional<double> Config::get_optional_float(const std::string& key) const {
  return has(key) ? std::optional<double>(get_float(key)) : std::nullopt;
}
std::optional<std::string> Config::get_optional_string(const std::string& key) const {
  return has(key) ? std::optional<std::string>(get_string(key)) : std::nullopt;
}

const Value& Config::value(const std::string& key) const {
  spec_or_throw(key);
  static const Value kUnset{};
  auto it = values_.find(key);
  return it == values_.end() ? kUnset : it->second;
}

const std::string& Config::origin(const std::string& key) const {
  spec_or_throw(key);
  static const std::string kDefault = "default";
  auto it = origins_.find(key);
  return it == origins_.end() ? kDefault : it->second;
}

void Config::set(const std::string& key, Value value, std::string origin) {
  spec_or_throw(key);
  values_[key] = std::move(value);
  origins_[key] = std::move(origin);
}

RunConfig Config::typed() const {
  RunConfig run;
  for (const KeySpec& k : schema()) {
    // With [[data.subsets]] the required data keys may be unset (each subset names its own).
    if (k.required && !is_set(value(k.key))) continue;
    k.write(run, value(k.key));
  }
  for (const Subset& s : subsets_) {
    DataSubset& typed = run.data.subsets.emplace_back();
    for (const auto& [name, v] : s.values) find_subset_key(name)->write(typed, v);
  }
  return run;
}

std::string to_toml(const RunConfig& run) {
  Config c;
  for (const KeySpec& k : schema()) {
    // Subsets name their own folders: [data] has none then.
    if (k.key == "data.instance_dir" && !run.data.subsets.empty()) continue;
    c.set(k.key, k.read(run), "RunConfig");
  }
  for (const DataSubset& typed : run.data.subsets) {
    Config::Subset s;
    for (const SubsetKeySpec& k : subset_schema()) {
      if (Value v = k.read(typed); is_set(v)) s.values[k.name] = std::move(v);
    }
    c.add_subset(std::move(s));
  }
  return c.to_toml();
}

std::string Config::to_toml() const {
  std::ostringstream out;
  for (const SectionSpec& section : sections()) {
    out << "[" << section.name << "]\n";
    for (const KeySpec& k : schema()) {
      if (k.section() != section.name) continue;
      const Value& v = value(k.key);
      if (is_set(v)) {
        out << k.name() << " = " << ::sdxl::config::to_toml(v) << "\n";
      } else {
        out << "# " << k.name() << " is unset: " << (k.unset_means.empty() ? "no value" : k.unset_means) << "\n";
      }
    }
    out << "\n";
  }
  for (const Subset& s : subsets_) {
    out << "[[data.subsets]]\n";
    for (const SubsetKeySpec& k : subset_schema()) {
      auto it = s.values.find(k.name);
      if (it != s.values.end()) out << k.name << " = " << ::sdxl::config::to_toml(it->second) << "\n";
    }
    out << "\n";
  }
  return out.str();
}

std::string Config::to_table() const {
  std::size_t key_w = 3, val_w = 5;
  std::vector<std::array<std::string, 3>> rows;
  const auto add = [&](const std::string& key, std::string shown, const std::string& source) {
    if (shown.size() > 60) shown = shown.substr(0, 57) + "...";
    key_w = std::max(key_w, key.size());
    val_w = std::max(val_w, shown.size());
    rows.push_back({key, std::move(shown), source});
  };
  for (const KeySpec& k : schema()) {
    const Value& v = value(k.key);
    const std::string unset = k.key == "data.instance_dir" && !subsets_.empty() ? "each subset names its own"
                                                                                 : k.unset_means;
    add(k.key, is_set(v) ? ::sdxl::config::to_toml(v) : "(unset: " + unset + ")", origin(k.key));
  }
  // Each subset's keys as it resolves them: its own, or what it inherits from [data].
  for (std::size_t i = 0; i < subsets_.size(); ++i) {
    for (const SubsetKeySpec& k : subset_schema()) {
      const std::string key = "data.subsets[" + std::to_string(i) + "]." + k.name;
      const auto own = subsets_[i].values.find(k.name);
      if (own != subsets_[i].values.end()) {
        add(key, ::sdxl::config::to_toml(own->second), subsets_[i].origins.at(k.name));
      } else {
        const Value& v = value(k.data_key->key);
        add(key, is_set(v) ? ::sdxl::config::to_toml(v) : "(unset)", "inherited from " + k.data_key->key);
      }
    }
  }
  std::ostringstream out;
  auto pad = [](const std::string& s, std::size_t w) { return s + std::string(w > s.size() ? w - s.size() : 0, ' '); };
  out << pad("key", key_w) << "  " << pad("value", val_w) << "  source\n";
  out << std::string(key_w, '-') << "  " << std::string(val_w, '-') << "  ------\n";
  for (const auto& r : rows) out << pad(r[0], key_w) << "  " << pad(r[1], val_w) << "  " << r[2] << "\n";
  return out.str();
}

// ---------------------------------------------------------------- loading

namespace {

std::string describe(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "the string " + util::quoted(*node.value<std::string>());
    case toml::node_type::integer: return "the integer " + std::to_string(*node.value<std::int64_t>());
    case toml::node_type::floating_point: return "the number " + util::format_number(*node.value<double>());
    case toml::node_type::boolean: return *node.value<bool>() ? "true" : "false";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    default: return "an unsupported value";
  }
}

std::string describe(const Value& v) {
  if (const auto* s = std::get_if<std::string>(&v)) return "the string " + util::quoted(*s);
  return to_toml(v);
}

// Converts a TOML node to the key's type; nullopt when the type does not fit.
std::optional<Value> convert(const toml::node& node, const KeySpec& spec) {
  switch (spec.type) {
    case ValueType::kBool:
      if (auto b = node.value_exact<bool>()) return Value(*b);
      return std::nullopt;
    case ValueType::kInt:
      if (auto i = node.value_exact<std::int64_t>()) return Value(*i);
      return std::nullopt;
    case ValueType::kFloat:
      if (auto d = node.value_exact<double>()) return Value(*d);
      if (auto i = node.value_exact<std::int64_t>()) return Value(static_cast<double>(*i));
      return std::nullopt;
    case ValueType::kString:
      if (auto s = node.value_exact<std::string>()) return Value(*s);
      return std::nullopt;
    case ValueType::kStringList: {
      const toml::array* arr = node.as_array();
      if (!arr) return std::nullopt;
      StringList list;
      for (const toml::node& el : *arr) {
        auto s = el.value_exact<std::string>();
        if (!s) return std::nullopt;
        list.push_back(*s);
      }
      return Value(std::move(list));
    }
  }
  return std::nullopt;
}

// Range and choice checks; returns an error text or "".
std::string check_value(const Value& v, const KeySpec& spec) {
  auto bad = [&] { return spec.key + ": expected " + spec.expectation() + ", got " + describe(v); };
  double number = 0;
  bool numeric = false;
  if (const auto* i = std::get_if<std::int64_t>(&v)) {
    number = static_cast<double>(*i);
    numeric = true;
  } else if (const auto* d = std::get_if<double>(&v)) {
    if (!std::isfinite(*d)) return bad();
    number = *d;
    numeric = true;
  }
  if (numeric) {
    if (spec.min && (number < *spec.min || (spec.min_exclusive && number == *spec.min))) return bad();
    if (spec.max && number > *spec.max) return bad();
  }
  auto allowed = [&](const std::string& s) {
    return spec.choices.empty() || std::find(spec.choices.begin(), spec.choices.end(), s) != spec.choices.end();
  };
  if (const auto* s = std::get_if<std::string>(&v)) {
    if (!allowed(*s) || (!spec.path.empty() && s->empty())) return bad();
  }
  if (const auto* l = std::get_if<StringList>(&v)) {
    if (l->empty() && !spec.allow_empty_list) return bad();
    for (const auto& s : *l) {
      if (!allowed(s)) return bad();
    }
  }
  return {};
}

// Why `name` cannot be a file's name in a folder (empty when it can).
std::string file_name_problem(const std::string& name) {
  if (name.empty() || name == "." || name == "..") return "empty or a folder reference";
  if (name.find_first_of("/\\") != std::string::npos) return "a slash";
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7f) return "a control character";
  }
  if (!util::is_valid_utf8(name)) return "not UTF-8";
  if (name.size() > 200) return "over 200 bytes";
  if (name == "pytorch_lora_weights") return "the diffusers file's name";
  return {};
}

class Loader {
 public:
  Config config;
  std::vector<std::string> errors;

  Loader() {
    for (const KeySpec& k : schema()) config.set(k.key, k.default_value, "default");
  }

  void load_table(const toml::table& root, const std::string& source) {
    for (auto&& [section_key, section_node] : root) {
      const std::string section(section_key.str());
      const std::string where = location(source, section_node);
      const toml::table* table = section_node.as_table();
      const bool known_section = std::any_of(sections().begin(), sections().end(),
                                             [&](const SectionSpec& s) { return s.name == section; });
      if (!known_section) {
        std::string msg = where + ": unknown section '" + section + "'";
        const std::string near = table ? nearest_section(section) : nearest_key(section);
        if (!near.empty()) msg += " (did you mean '" + near + "'?)";
        if (!table) msg += "; keys belong in a [section], e.g. [train] batch_size = 1";
        errors.push_back(msg);
        continue;
      }
      if (!table) {
        errors.push_back(where + ": '" + section + "' must be a table ([" + section + "]), got " +
                         describe(section_node));
        continue;
      }
      for (auto&& [name, node] : *table) {
        if (section == "data" && name.str() == "subsets") {
          load_subsets(node, source);
          continue;
        }
        const std::string full = section + "." + std::string(name.str());
        apply(full, node, location(source, node));
      }
    }
  }

  // [[data.subsets]]: an array of tables whose keys are subset keys with data.<key>'s type and
  // range.
  void load_subsets(const toml::node& node, const std::string& source) {
    const toml::array* tables = node.as_array();
    if (!tables || !tables->is_array_of_tables()) {
      errors.push_back(location(source, node) + ": data.subsets: expected [[data.subsets]] tables, got " +
                       describe(node));
      return;
    }
    for (const toml::node& entry : *tables) {
      const std::string table = "data.subsets[" + std::to_string(config.subsets().size()) + "]";
      Config::Subset subset;
      subset.origin = location(source, entry);
      for (auto&& [name, value_node] : *entry.as_table()) {
        const std::string key(name.str());
        const std::string where = location(source, value_node);
        const SubsetKeySpec* spec = find_subset_key(key);
        if (!spec) {
          report_unknown_subset_key(key, where);
          continue;
        }
        auto value = convert(value_node, *spec->data_key);
        const std::string problem = value ? check_value(*value, *spec->data_key) : std::string();
        if (!value || !problem.empty()) {
          errors.push_back(where + ": " + table + "." + key + ": expected " + spec->data_key->expectation() +
                           ", got " + describe(value_node));
          continue;
        }
        subset.values[key] = std::move(*value);
        subset.origins[key] = where;
      }
      config.add_subset(std::move(subset));
    }
  }

  void report_unknown_subset_key(const std::string& key, const std::string& where) {
    std::vector<std::string> names;
    for (const SubsetKeySpec& k : subset_schema()) names.push_back(k.name);
    const std::string near = util::nearest(key, names);
    errors.push_back(where + ": unknown key '" + key + "' in [[data.subsets]]" +
                     (near.empty() ? std::string() : " (did you mean '" + near + "'?)") + "; a subset takes " +
                     util::join(names, ", "));
  }

  void report_unknown_key(const std::string& key, const std::string& where) {
    std::string msg = where + ": unknown key '" + key + "'";
    const std::string near = nearest_key(key);
    if (!near.empty()) msg += " (did you mean '" + near + "'?)";
    errors.push_back(msg);
  }

  void apply(const std::string& key, const toml::node& node, const std::string& where) {
    const KeySpec* spec = find_key(key);
    if (!spec) {
      report_unknown_key(key, where);
      return;
    }
    auto value = convert(node, *spec);
    if (!value) {
      errors.push_back(where + ": " + key + ": expected " + spec->expectation() + ", got " + describe(node));
      return;
    }
    set_checked(*spec, std::move(*value), where);
  }

  void set_checked(const KeySpec& spec, Value value, const std::string& where) {
    const std::string problem = check_value(value, spec);
    if (!problem.empty()) {
      errors.push_back(where + ": " + problem);
      return;
    }
    config.set(spec.key, std::move(value), where);
  }

  void apply_override(const std::string& arg) {
    const std::string where = "--set " + arg;
    const auto eq = arg.find('=');
    if (eq == std::string::npos || eq == 0) {
      errors.push_back(where + ": expected section.key=value");
      return;
    }
    const std::string key = util::trim(arg.substr(0, eq));
    const std::string text = arg.substr(eq + 1);
    if (key.rfind("data.subsets[", 0) == 0) {
      apply_subset_override(key, text, where);
      return;
    }
    const KeySpec* spec = find_key(key);
    if (key == "data.subsets" || key.rfind("data.subsets.", 0) == 0) {
      errors.push_back(where + ": [[data.subsets]] tables are given in the config file, not with --set (a key of "
                       "one of them is: --set data.subsets[0].repeats=3)");
      return;
    }
    if (!spec) {
      report_unknown_key(key, where);
      return;
    }
    if (auto value = override_value(*spec, key, text, where)) set_checked(*spec, std::move(*value), where);
  }

  // --set data.subsets[N].name=value: a key of the file's N-th [[data.subsets]] table.
  void apply_subset_override(const std::string& key, const std::string& text, const std::string& where) {
    const std::string prefix = "data.subsets[";
    const auto close = key.find("].", prefix.size());
    const std::string index = close == std::string::npos ? "" : key.substr(prefix.size(), close - prefix.size());
    const std::string name = close == std::string::npos ? "" : key.substr(close + 2);
    const std::size_t count = config.subsets().size();
    if (index.empty() || index.find_first_not_of("0123456789") != std::string::npos) {
      errors.push_back(where + ": expected data.subsets[N].key=value, such as data.subsets[0].repeats=3");
      return;
    }
    if (index.size() > 1 && index[0] == '0') {
      errors.push_back(where + ": data.subsets[" + index + "]: write the index without leading zeros (data.subsets[" +
                       std::to_string(std::stoul(index.substr(0, 6))) + "...])");
      return;
    }
    const std::size_t i = index.size() > 6 ? count : std::stoul(index);  // longer: more tables than any file has
    if (i >= count) {
      errors.push_back(where + ": data.subsets[" + index + "]: the config file has " + std::to_string(count) +
                       " [[data.subsets]] table(s)" +
                       (count ? " (data.subsets[0] to data.subsets[" + std::to_string(count - 1) + "])" : ""));
      return;
    }
    const SubsetKeySpec* spec = find_subset_key(name);
    if (!spec) {
      report_unknown_subset_key(name, where);
      return;
    }
    auto value = override_value(*spec->data_key, key, text, where);
    if (!value) return;
    const std::string problem = check_value(*value, *spec->data_key);
    if (!problem.empty()) {
      errors.push_back(where + ": " + key + ": expected " + spec->data_key->expectation() + ", got " +
                       util::quoted(text));
      return;
    }
    config.set_subset_value(i, name, std::move(*value), where);
  }

  // A --set value for a key of `spec`'s type: TOML (`5`, `true`, `["a", "b"]`, `"quoted"`), or
  // a bare word as a string for string keys, so that --set data.instance_prompt=a photo of sks
  // dog works. Reports and gives nothing when it is none of these.
  std::optional<Value> override_value(const KeySpec& spec, const std::string& key, const std::string& text,
                                      const std::string& where) {
    if (text.find_first_of("\r\n") != std::string::npos) {
      errors.push_back(where + ": " + key + ": the value must be on one line (use \\n inside a quoted string)");
      return std::nullopt;
    }
    std::optional<Value> value;
    bool parsed_ok = false, structured = false;
    try {
      toml::table parsed = toml::parse("v = " + text, std::string_view("--set"));
      parsed_ok = true;
      if (const toml::node* node = parsed.get("v")) {
        value = convert(*node, spec);
        structured = node->is_array() || node->is_table();
      }
    } catch (const toml::parse_error&) {
    }
    // A bare word is a string, but a quoted value that is not valid TOML (an unterminated
    // quote) is a mistake, not a string starting with a quote.
    const std::string first = util::trim(text).substr(0, 1);
    const bool quoted = first == "\"" || first == "'" || first == "[";
    if (!value && !parsed_ok && quoted) {
      errors.push_back(where + ": " + key + ": " + util::quoted(text) + " is not a valid TOML value (an unterminated "
                       "quote or bracket?); expected " + spec.expectation());
      return std::nullopt;
    }
    // An array or table given for a string key is a mistake (a list of abstractions for
    // lora.token_abstraction, say), not text.
    if (!value && spec.type == ValueType::kString && !structured) value = Value(text);
    if (!value) {
      errors.push_back(where + ": " + key + ": expected " + spec.expectation() + ", got " + util::quoted(text));
      return std::nullopt;
    }
    return value;
  }

  void check_required(const std::string& source) {
    const bool subsets = !config.subsets().empty();
    for (const KeySpec& k : schema()) {
      // Each subset names its folder; the instance prompt may be given per subset.
      if (subsets && (k.key == "data.instance_dir" || k.key == "data.instance_prompt")) continue;
      if (k.required && !config.has(k.key)) {
        errors.push_back(source + ": missing required key '" + k.key + "' (" + k.help + ")");
      }
    }
  }

  // Settings that are each valid but contradict one another.
  // Each [[data.subsets]] table with what it inherits from [data] must name its images, its
  // prompt and, with prior preservation, its class images.
  void check_subsets() {
    auto at = [&](const std::string& key) { return config.origin(key); };
    const auto& subsets = config.subsets();
    if (subsets.empty()) return;
    if (config.has("data.instance_dir")) {
      errors.push_back(at("data.instance_dir") + ": data.instance_dir and [[data.subsets]] (" + subsets[0].origin +
                       ") both name instance images; give each subset its instance_dir");
    }
    for (std::size_t i = 0; i < subsets.size(); ++i) {
      const Config::Subset& s = subsets[i];
      const std::string name = s.origin + ": data.subsets[" + std::to_string(i) + "]";
      const auto has = [&](const std::string& key) { return s.values.count(key) || config.has("data." + key); };
      if (!s.values.count("instance_dir")) errors.push_back(name + ": needs instance_dir");
      if (!has("instance_prompt")) errors.push_back(name + ": needs instance_prompt (or data.instance_prompt)");
      if (config.get_bool("prior.enabled")) {
        for (const char* needed : {"class_dir", "class_prompt"}) {
          if (!has(needed)) {
            errors.push_back(name + ": prior.enabled = true needs " + needed + " in the subset or data." + needed);
          }
        }
      }
      auto ext = s.values.find("caption_ext");
      if (ext != s.values.end()) check_caption_ext(std::get<std::string>(ext->second), s.origins.at("caption_ext"));
    }
    if (config.get_bool("prior.enabled")) check_shared_class_dirs();
    check_repeated_subsets();
  }

  // Where a subset's values among `keys` came from: a --set that changed one of them, else
  // the table's line in the file.
  static std::string origin_of(const Config::Subset& s, const std::vector<std::string>& keys) {
    std::string where = s.origin;
    for (const auto& key : keys) {
      auto it = s.origins.find(key);
      if (it != s.origins.end() && it->second.rfind("--set ", 0) == 0) where = it->second;
    }
    return where;
  }

  // Two subsets with the same folder and the same prompt or caption source train every image
  // twice under one prompt: what repeats is for. The same folder under other captions or
  // prompts is a deliberate second concept and stays allowed.
  void check_repeated_subsets() {
    std::map<std::string, std::size_t> first_of;  // folder + caption source -> subset
    const auto& subsets = config.subsets();
    for (std::size_t i = 0; i < subsets.size(); ++i) {
      const auto value = [&](const std::string& key) -> std::string {
        auto it = subsets[i].values.find(key);
        if (it != subsets[i].values.end()) {
          if (const auto* s = std::get_if<std::string>(&it->second)) return *s;
          return "";
        }
        return config.has("data." + key) ? config.get_string("data." + key) : std::string();
      };
      std::filesystem::path dir = std::filesystem::path(value("instance_dir")).lexically_normal();
      if (!dir.has_filename()) dir = dir.parent_path();
      const std::string key = dir.string() + '\0' + value("instance_prompt") + '\0' + value("format") + '\0' +
                              value("caption_ext") + '\0' + value("caption_column");
      const auto [it, added] = first_of.emplace(key, i);
      if (!added) {
        errors.push_back(origin_of(subsets[i], {"instance_dir", "instance_prompt", "format", "caption_ext",
                                                "caption_column"}) +
                         ": data.subsets[" + std::to_string(i) + "] repeats data.subsets[" +
                         std::to_string(it->second) + "] (the same instance_dir " + util::quoted(dir.string()) +
                         " with the same prompt and captions): every image would train twice; raise that subset's "
                         "repeats instead");
      }
    }
  }

  // Two subsets drawing class images into one folder under different prompts would each train
  // on the other's images as their own class.
  void check_shared_class_dirs() {
    std::map<std::string, std::pair<std::string, std::size_t>> prompt_of;  // class_dir -> (prompt, subset)
    const auto& subsets = config.subsets();
    for (std::size_t i = 0; i < subsets.size(); ++i) {
      const auto value = [&](const std::string& key) -> std::string {
        auto it = subsets[i].values.find(key);
        if (it != subsets[i].values.end()) return std::get<std::string>(it->second);
        return config.has("data." + key) ? config.get_string("data." + key) : std::string();
      };
      std::filesystem::path normal = std::filesystem::path(value("class_dir")).lexically_normal();
      if (!normal.has_filename()) normal = normal.parent_path();  // "c/" is "c"
      const std::string dir = normal.string();
      const auto [it, added] = prompt_of.emplace(dir, std::make_pair(value("class_prompt"), i));
      if (!added && it->second.first != value("class_prompt")) {
        errors.push_back(origin_of(subsets[i], {"class_dir", "class_prompt"}) + ": data.subsets[" + std::to_string(i) +
                         "] and data.subsets[" +
                         std::to_string(it->second.second) + "] share class_dir " + util::quoted(dir) +
                         " with different class prompts (" + util::quoted(value("class_prompt")) + ", " +
                         util::quoted(it->second.first) + "); give each its own class_dir");
      }
    }
  }

  void check_caption_ext(const std::string& ext, const std::string& where) {
    if (ext.size() < 2 || ext[0] != '.' || ext.find_first_of("/\\") != std::string::npos) {
      errors.push_back(where + ": caption_ext: expected a file extension starting with '.', such as \".txt\" or "
                       "\".caption\", got " + util::quoted(ext));
    }
  }

  void check_tags() {
    auto at = [&](const std::string& key) { return config.origin(key); };
    if (config.get_string("data.caption_separator").empty()) {
      errors.push_back(at("data.caption_separator") + ": data.caption_separator: expected a non-empty separator such "
                       "as \",\"");
    }
    if (config.get_string("data.caption_separator") != "," && !config.get_bool("data.shuffle_tags")) {
      errors.push_back(at("data.caption_separator") + ": data.caption_separator only applies with "
                       "data.shuffle_tags = true; set that or remove data.caption_separator");
    }
    if (config.get_int("data.keep_tokens") > 0 && !config.get_bool("data.shuffle_tags")) {
      errors.push_back(at("data.keep_tokens") + ": data.keep_tokens = " +
                       std::to_string(config.get_int("data.keep_tokens")) +
                       " only applies with data.shuffle_tags = true; set that or remove data.keep_tokens");
    }
  }

  // The bucket and size keys one image set reads: [data]'s, or a subset's own with what it
  // inherits from [data]. `name` is how a message names a key, `origin` where it was set.
  struct SizeKeys {
    std::function<std::optional<Value>(const std::string&)> value;
    std::function<std::string(const std::string&)> name, origin;
  };

  SizeKeys data_size_keys() {
    return {[&](const std::string& k) -> std::optional<Value> {
              if (!config.has("data." + k)) return std::nullopt;
              return config.value("data." + k);
            },
            [](const std::string& k) { return "data." + k; },
            [&](const std::string& k) { return config.origin("data." + k); }};
  }

  SizeKeys subset_size_keys(std::size_t i) {
    const Config::Subset& s = config.subsets()[i];
    const SizeKeys data = data_size_keys();
    const std::string prefix = "data.subsets[" + std::to_string(i) + "].";
    return {[&s, data](const std::string& k) { return s.values.count(k) ? s.values.at(k) : data.value(k); },
            [&s, data, prefix](const std::string& k) { return s.values.count(k) ? prefix + k : data.name(k); },
            [&s, data](const std::string& k) { return s.values.count(k) ? s.origins.at(k) : data.origin(k); }};
  }

  // An image set's resolution and, when it buckets, its buckets: sizes that fit together
  // (multiples of 8, the resolution and the bucket sides multiples of the bucket step,
  // min <= resolution <= max), and a size that changes from step to step only where nothing
  // captured holds one size.
  void check_sizes(const SizeKeys& k) {
    const auto get_int = [&](const std::string& key) -> std::optional<std::int64_t> {
      const auto v = k.value(key);
      if (!v) return std::nullopt;
      return std::get<std::int64_t>(*v);
    };
    const std::int64_t resolution = get_int("resolution").value_or(1024);
    const auto say = [&](const std::string& key, const std::string& what) {
      // Two subsets inheriting the same [data] value would say the same: once is enough.
      const std::string e = k.origin(key) + ": " + k.name(key) + what;
      if (std::find(errors.begin(), errors.end(), e) == errors.end()) errors.push_back(e);
    };
    if (resolution % 8 != 0) say("resolution", ": expected a multiple of 8, got " + std::to_string(resolution));
    const auto bucketing = k.value("bucketing");
    const bool buckets = bucketing && std::get<bool>(*bucketing);
    const bool own_size = resolution != config.get_int("data.resolution");
    if ((buckets || own_size) && config.get_bool("train.cuda_graphs")) {
      const std::string key = buckets ? "bucketing" : "resolution";
      say(key, std::string(buckets ? " = true" : " = " + std::to_string(resolution) + " (not data.resolution)") +
                   " changes the latent size from step to step, which a captured CUDA graph (" +
                   config.origin("train.cuda_graphs") + ": train.cuda_graphs) cannot; turn one off");
    }
    if (!buckets) return;  // the bucket keys are not read
    const std::int64_t step = get_int("bucket_step").value_or(64);
    if (step % 8 != 0) {
      say("bucket_step", ": expected a multiple of 8 (the VAE's factor), got " + std::to_string(step));
      return;
    }
    // kohya's buckets hold at most resolution² pixels in sides of whole steps: a resolution
    // between steps would train every square image at the step below, without a word.
    if (resolution % step != 0) {
      say("bucket_step", " = " + std::to_string(step) + ": " + k.name("resolution") + " = " +
                             std::to_string(resolution) + " is not a multiple of it (bucketing trains at sides that "
                             "are); choose a bucket step that divides the resolution, such as 64 or 32");
      return;
    }
    for (const char* key : {"min_bucket_resolution", "max_bucket_resolution"}) {
      if (auto v = get_int(key); v && *v % step != 0) {
        say(key, ": expected a multiple of " + k.name("bucket_step") + " = " + std::to_string(step) + ", got " +
                     std::to_string(*v));
      }
    }
    const auto min = get_int("min_bucket_resolution"), max = get_int("max_bucket_resolution");
    if (min && *min > resolution) {
      say("min_bucket_resolution", " = " + std::to_string(*min) + " is above " + k.name("resolution") + " = " +
                                       std::to_string(resolution));
    }
    if (max && *max < resolution) {
      say("max_bucket_resolution", " = " + std::to_string(*max) + " is below " + k.name("resolution") + " = " +
                                       std::to_string(resolution));
    }
  }

  // Each image set's sizes as it resolves them: [data] without subsets, else every subset
  // (with what it inherits; [data]'s own values only matter through them), and
  // data.resolution itself, which validation images default to.
  void check_buckets() {
    if (config.subsets().empty()) {
      check_sizes(data_size_keys());
      return;
    }
    if (config.get_int("data.resolution") % 8 != 0) {
      errors.push_back(config.origin("data.resolution") + ": data.resolution: expected a multiple of 8, got " +
                       std::to_string(config.get_int("data.resolution")));
    }
    for (std::size_t i = 0; i < config.subsets().size(); ++i) check_sizes(subset_size_keys(i));
  }

  // Pivotal tuning (lora.train_text_encoder_ti): its abstractions parse, and it trains the text
  // encoders' input embeddings, which LoRA on them would also move (diffusers forbids both).
  void check_pivotal() {
    if (!config.get_bool("lora.train_text_encoder_ti")) return;
    auto at = [&](const std::string& key) { return config.origin(key); };
    try {
      text::TokenAbstractions::parse(config.get_string("lora.token_abstraction"),
                                     config.get_int("lora.num_new_tokens_per_abstraction"));
    } catch (const Error& e) {
      errors.push_back(at("lora.token_abstraction") + ": lora.token_abstraction: " + e.what());
    }
    if (config.get_bool("lora.train_text_encoder")) {
      errors.push_back(at("lora.train_text_encoder_ti") + ": lora.train_text_encoder_ti and lora.train_text_encoder (" +
                       at("lora.train_text_encoder") + ") both train the text encoders; set one of them (pivotal "
                       "tuning or text-encoder LoRA, as diffusers' advanced script)");
    }
    if (config.get_bool("train.cuda_graphs")) {
      errors.push_back(at("lora.train_text_encoder_ti") + ": pivotal tuning runs the text encoders in every step, "
                       "which a captured CUDA graph (" + at("train.cuda_graphs") + ") does not hold; turn one off");
    }
  }

  void check_consistency() {
    auto at = [&](const std::string& key) { return config.origin(key); };
    if (config.get_bool("prior.enabled") && config.subsets().empty()) {
      for (const char* needed : {"data.class_dir", "data.class_prompt"}) {
        if (!config.has(needed)) {
          errors.push_back(at("prior.enabled") + ": prior.enabled = true needs " + needed + " to be set");
        }
      }
    }
    if (auto r = config.get_optional_int("validation.resolution"); r && *r % 8 != 0) {
      errors.push_back(at("validation.resolution") + ": validation.resolution: expected a multiple of 8, got " +
                       std::to_string(*r));
    }
    if (config.has("validation.every_steps") && config.has("validation.every_epochs")) {
      errors.push_back(at("validation.every_steps") + ": validation.every_steps and validation.every_epochs (" +
                       at("validation.every_epochs") + ") are both set; set one of them");
    }
    // diffusers' polynomial schedule decays to lr_end = 1e-7 (train/lr_schedule.h).
    if (config.get_string("train.lr_scheduler") == "polynomial" && config.get_float("train.learning_rate") <= 1e-7) {
      errors.push_back(at("train.learning_rate") + ": train.learning_rate must be above 1e-7 (the end value of the "
                       "polynomial schedule), got " + util::format_number(config.get_float("train.learning_rate")));
    }
    if (config.get_bool("train.edm_style") && config.has("train.snr_gamma")) {
      errors.push_back(at("train.snr_gamma") + ": train.snr_gamma does not apply to EDM-style training (" +
                       at("train.edm_style") + "), which has no SNR weighting; remove one of them");
    }
    if (config.get_bool("train.edm_style") && config.get_string("train.loss") != "l2") {
      errors.push_back(at("train.loss") + ": train.loss = " + util::quoted(config.get_string("train.loss")) +
                       " needs the DDPM schedule of its huber_c; EDM-style training (" + at("train.edm_style") +
                       ") takes train.loss = \"l2\"");
    }
    if (auto max = config.get_optional_int("train.max_timestep"); max && *max <= config.get_int("train.min_timestep")) {
      errors.push_back(at("train.max_timestep") + ": train.max_timestep = " + std::to_string(*max) +
                       " must be above train.min_timestep = " + std::to_string(config.get_int("train.min_timestep")));
    }
    if (config.get_bool("lora.use_dora") && config.has("lora.preset") &&
        config.get_string("lora.preset") == "kohya_conv") {
      errors.push_back(at("lora.use_dora") + ": lora.use_dora with lora.preset = \"kohya_conv\" (" +
                       at("lora.preset") + "): DoRA on convolutions is not supported; use the \"kohya\" preset "
                       "for DoRA, or LoCon without DoRA");
    }
    if (config.has("lora.conv_rank") || config.has("lora.conv_alpha")) {
      const bool preset_conv = config.has("lora.preset") && config.get_string("lora.preset") == "kohya_conv";
      const auto& targets = config.get_list("lora.targets");
      const bool listed = std::any_of(targets.begin(), targets.end(), [](const std::string& t) {
        return t == "conv1" || t == "conv2" || t == "conv" || util::ends_with(t, ".conv");
      });
      if (!preset_conv && !(listed && !config.has("lora.preset"))) {
        const std::string key = config.has("lora.conv_rank") ? "lora.conv_rank" : "lora.conv_alpha";
        errors.push_back(at(key) + ": " + key + " applies to 3x3 convolutions, which no LoRA target names; set "
                         "lora.preset = \"kohya_conv\" (kohya's LoCon) or list conv1/conv2 in lora.targets");
      }
    }
    if (config.has("lora.preset") && config.origin("lora.targets") != "default") {
      errors.push_back(at("lora.preset") + ": lora.preset and lora.targets (" + at("lora.targets") +
                       ") both choose the UNet's targets; set one of them");
    }
    const auto warmup = config.get_int("train.lr_warmup_steps");
    if (auto steps = config.get_optional_int("train.max_steps"); steps && warmup > *steps) {
      errors.push_back(at("train.lr_warmup_steps") + ": train.lr_warmup_steps = " + std::to_string(warmup) +
                       " exceeds train.max_steps = " + std::to_string(*steps));
    }
    if (auto ext = config.get_optional_string("data.caption_ext");
        ext && (ext->size() < 2 || (*ext)[0] != '.' || ext->find_first_of("/\\") != std::string::npos)) {
      errors.push_back(at("data.caption_ext") + ": data.caption_ext: expected a file extension starting with '.', "
                       "such as \".txt\" or \".caption\", got " + util::quoted(*ext));
    }
    if (auto name = config.get_optional_string("output.name")) {
      const std::string problem = file_name_problem(*name);
      if (!problem.empty()) {
        errors.push_back(at("output.name") + ": output.name: expected a file name without folders, got " +
                         util::quoted(*name) + " (" + problem + ")");
      }
    }
    const std::string& license = config.get_string("output.license");
    const bool license_ok = !license.empty() && license.size() <= 64 &&
                            std::all_of(license.begin(), license.end(), [](unsigned char c) {
                              return std::isalnum(c) || c == '.' || c == '-' || c == '+' || c == '_';
                            });
    if (!license_ok) {
      errors.push_back(at("output.license") + ": output.license: expected an SPDX license id (letters, digits, "
                       "'.', '-', '+') such as \"mit\" or \"openrail++\", got " + util::quoted(license));
    }
  }

  void finish() {
    if (!errors.empty()) {
      throw UsageError(util::join(errors, "\n"),
                       "run 'sdxl-dreambooth config-reference' for every key with its type and range");
    }
  }

  static std::string location(const std::string& source, const toml::node& node) {
    const auto line = node.source().begin.line;
    return line > 0 ? source + ":" + std::to_string(line) : source;
  }
};

// Keys of this program's configs have two or three parts (section.key, data.subsets);
// toml++ recurses once per part of a dotted key or table header and overflows the stack on
// tens of thousands of them, so a line with far more dots than any key here is refused first.
void refuse_deep_keys(const std::string& text, const std::string& source) {
  constexpr std::size_t kMaxParts = 64;
  std::size_t line_start = 0;
  for (int line = 1; line_start < text.size(); ++line) {
    std::size_t end = text.find('\n', line_start);
    if (end == std::string::npos) end = text.size();
    const std::string_view l(text.data() + line_start, end - line_start);
    const std::size_t first = l.find_first_not_of(" \t");
    // The key part: a [header] up to its ']', else up to the '=' (values may hold dots freely).
    const std::size_t stop = first != std::string_view::npos && l[first] == '[' ? l.find(']') : l.find('=');
    const std::string_view key = l.substr(0, stop);
    if (static_cast<std::size_t>(std::count(key.begin(), key.end(), '.')) >= kMaxParts) {
      throw UsageError(source + ":" + std::to_string(line) + ": a key of more than " + std::to_string(kMaxParts) +
                       " dotted parts; keys here are section.key");
    }
    line_start = end + 1;
  }
}

Config load(const std::string& text, const std::string& source, const std::vector<std::string>& overrides) {
  Loader loader;
  refuse_deep_keys(text, source);
  try {
    toml::table root = toml::parse(text, std::string_view(source));
    loader.load_table(root, source);
  } catch (const toml::parse_error& e) {
    throw UsageError(source + ":" + std::to_string(e.source().begin.line) + ": not valid TOML: " +
                     std::string(e.description()));
  }
  for (const auto& arg : overrides) loader.apply_override(arg);
  loader.check_required(source);
  if (loader.errors.empty()) loader.check_consistency();
  if (loader.errors.empty()) loader.check_pivotal();
  if (loader.errors.empty()) loader.check_buckets();
  if (loader.errors.empty()) loader.check_tags();
  if (loader.errors.empty()) loader.check_subsets();
  loader.finish();
  return loader.config;
}

}  // namespace

Config load_config_text(const std::string& text, const std::string& source_name,
                        const std::vector<std::string>& overrides) {
  return load(text, source_name, overrides);
}

Config load_config_file(const std::string& path, const std::vector<std::string>& overrides) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw UsageError("config file '" + path + "' is a folder", "give the TOML file, e.g. configs/tiny.toml");
  }
  if (const std::string problem = util::small_file_problem(path, 16u << 20); !problem.empty()) {
    throw UsageError("config file: " + problem, "give the TOML file, e.g. configs/tiny.toml");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    throw UsageError("cannot read config file '" + path + "': " + std::strerror(err));
  }
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) throw UsageError("error reading config file '" + path + "'");
  return load(buf.str(), path, overrides);
}

// ---------------------------------------------------------------- documentation

namespace {

std::string subsets_reference_markdown() {
  std::ostringstream out;
  out << "\n### `[[data.subsets]]` — several concepts in one run\n\n"
      << "Each `[[data.subsets]]` table is one concept. A key it does not set takes the `[data]` value; "
      << "`instance_dir` is required in each, and `[data]` then sets no `instance_dir`. "
      << "Messages name a subset by its place in the file, from 0: `data.subsets[1]`; `--set "
         "data.subsets[1].repeats=3` sets a key of that table (the tables themselves come from the file).\n\n"
      << "| key | type | when unset | allowed |\n|---|---|---|---|\n";
  for (const SubsetKeySpec& k : subset_schema()) {
    out << "| `" << k.name << "` | " << type_name(k.data_key->type) << " | "
        << (k.name == "instance_dir" ? std::string("**required**") : "`data." + k.name + "`") << " | "
        << k.data_key->expectation() << " |\n";
  }
  return out.str();
}

}  // namespace

std::string config_reference_markdown() {
  std::ostringstream out;
  out << "# Configuration reference\n\n"
      << "Generated by `sdxl-dreambooth config-reference` from the schema in `src/config/schema.cpp`;\n"
      << "a test keeps this file up to date. Every key can also be given on the command line as\n"
      << "`--set section.key=value` (TOML syntax; a bare word is a string for string keys).\n"
      << "Relative paths are relative to the working directory of the run.\n";
  for (const SectionSpec& section : sections()) {
    out << "\n## `[" << section.name << "]` — " << section.help << "\n\n"
        << "| key | type | default | allowed | description |\n|---|---|---|---|---|\n";
    for (const KeySpec& k : schema()) {
      if (k.section() != section.name) continue;
      std::string def;
      if (k.required) {
        def = "**required**";
      } else if (is_set(k.default_value)) {
        def = "`" + to_toml(k.default_value) + "`";
      } else {
        def = "unset: " + k.unset_means;
      }
      std::string allowed = k.expectation();
      out << "| `" << k.name() << "` | " << type_name(k.type) << " | " << def << " | " << allowed << " | "
          << k.help << " |\n";
    }
    if (section.name == "data") out << subsets_reference_markdown();
  }
  return out.str();
}

std::string config_help_text() {
  std::ostringstream out;
  for (const SectionSpec& section : sections()) {
    out << "  [" << section.name << "] " << section.help << "\n";
    for (const KeySpec& k : schema()) {
      if (k.section() != section.name) continue;
      std::string def = k.required ? "required" : is_set(k.default_value) ? to_toml(k.default_value) : "unset";
      out << "    " << k.key << " (" << type_name(k.type) << ", " << def << "): " << k.help << "\n";
    }
    if (section.name == "data") {
      std::vector<std::string> names;
      for (const SubsetKeySpec& k : subset_schema()) names.push_back(k.name);
      out << "    [[data.subsets]] (tables, one per concept): " << util::join(names, ", ")
          << "; unset keys take the [data] value\n";
    }
  }
  return out.str();
}

}  // namespace sdxl::config
