#include "sdxl_dreambooth/text/token_abstractions.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/util/strings.h"

#include <algorithm>
#include <cctype>
#include <set>

namespace sdxl::text {

TokenAbstractions::TokenAbstractions(std::vector<Entry> entries) : entries_(std::move(entries)) {}

TokenAbstractions TokenAbstractions::parse(const std::string& list, std::int64_t per_abstraction) {
  std::string compact;
  for (char c : list) {
    if (!std::isspace(static_cast<unsigned char>(c))) compact += c;
  }
  std::vector<Entry> entries;
  std::set<std::string> seen;
  std::int64_t next = 0;
  for (const std::string& name : util::split(compact, ',')) {
    if (name.empty()) throw Error(util::quoted(list) + " has an empty abstraction; expected names such as \"TOK,TOK2\"");
    if (name.find_first_of("<>") != std::string::npos) {
      throw Error(util::quoted(name) + " contains '<' or '>', which the new tokens <s0>, <s1>, ... are made of");
    }
    if (!seen.insert(name).second) throw Error(util::quoted(name) + " is listed twice in " + util::quoted(list));
    Entry e{name, {}};
    for (std::int64_t k = 0; k < per_abstraction; ++k) e.second.push_back("<s" + std::to_string(next++) + ">");
    entries.push_back(std::move(e));
  }
  if (entries.empty()) throw Error("no abstraction given; expected names such as \"TOK\" or \"TOK,TOK2\"");
  return TokenAbstractions(std::move(entries));
}

std::vector<std::string> TokenAbstractions::tokens() const {
  std::vector<std::string> out;
  for (const auto& e : entries_) out.insert(out.end(), e.second.begin(), e.second.end());
  return out;
}

std::string TokenAbstractions::apply(const std::string& prompt) const {
  std::vector<const Entry*> order;
  for (const auto& e : entries_) {
    if (!e.first.empty()) order.push_back(&e);  // a file's tokens without abstraction rewrite nothing
  }
  std::stable_sort(order.begin(), order.end(),
                   [](const Entry* a, const Entry* b) { return a->first.size() > b->first.size(); });
  // One left-to-right pass: at each position the longest abstraction that starts there, so
  // replaced text is never matched again.
  std::string out;
  for (std::size_t i = 0; i < prompt.size();) {
    const Entry* hit = nullptr;
    for (const Entry* e : order) {
      if (prompt.compare(i, e->first.size(), e->first) == 0) {
        hit = e;
        break;
      }
    }
    if (!hit) {
      out += prompt[i++];
      continue;
    }
    for (const auto& t : hit->second) out += t;
    i += hit->first.size();
  }
  return out;
}

std::string TokenAbstractions::describe() const {
  std::string out;
  for (const auto& e : entries_) {
    if (!out.empty()) out += ", ";
    out += e.first + " -> " + util::join(e.second, "");
  }
  return out;
}

}  // namespace sdxl::text
