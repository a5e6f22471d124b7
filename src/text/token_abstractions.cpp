#include "sdxl_dreambooth/text/token_abstractions.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/util/strings.h"

#include <algorithm>
#include <cctype>
#include <set>
#include <string>

namespace sdxl::text {

TokenAbstractions::TokenAbstractions(std::vector<Entry> entries) : entries_(std::move(entries)) {}

namespace {

bool blank_or_control(unsigned char c) { return std::isspace(c) || std::iscntrl(c); }

// Why `word` cannot be an abstraction or a token, or "".
std::string word_problem(const std::string& word, bool abstraction) {
  if (word.empty()) return "is empty";
  if (std::any_of(word.begin(), word.end(), [](char c) { return blank_or_control(static_cast<unsigned char>(c)); })) {
    return abstraction ? "contains whitespace or a control character; an abstraction is one word (diffusers would "
                         "remove the spaces, and the squeezed word never matches a prompt)"
                       : "contains whitespace or a control character";
  }
  if (abstraction && word.find_first_of("<>") != std::string::npos) {
    return "contains '<' or '>', which the new tokens <s0>, <s1>, ... are made of";
  }
  return {};
}

}  // namespace

TokenAbstractions TokenAbstractions::parse(const std::string& list, std::int64_t per_abstraction) {
  std::vector<Entry> entries;
  std::int64_t next = 0;
  for (const std::string& part : util::split(list, ',')) {
    const std::string name = util::trim(part);
    if (name.empty()) throw Error(util::quoted(list) + " has an empty abstraction; expected names such as \"TOK,TOK2\"");
    Entry e{name, {}};
    for (std::int64_t k = 0; k < per_abstraction; ++k) e.second.push_back("<s" + std::to_string(next++) + ">");
    entries.push_back(std::move(e));
  }
  if (entries.empty()) throw Error("no abstraction given; expected names such as \"TOK\" or \"TOK,TOK2\"");
  return checked(std::move(entries));
}

TokenAbstractions TokenAbstractions::checked(std::vector<Entry> entries) {
  if (entries.empty()) throw Error("no abstraction given");
  std::set<std::string> names, tokens;
  for (const auto& [name, list] : entries) {
    if (const std::string p = word_problem(name, true); !p.empty()) throw Error(util::quoted(name) + " " + p);
    if (!names.insert(name).second) throw Error(util::quoted(name) + " is listed twice");
    if (list.empty()) throw Error(util::quoted(name) + " stands for no token");
    for (const auto& token : list) {
      if (const std::string p = word_problem(token, false); !p.empty()) {
        throw Error("the token " + util::quoted(token) + " of " + util::quoted(name) + " " + p);
      }
      if (!tokens.insert(token).second) throw Error("the token " + util::quoted(token) + " is listed twice");
    }
  }
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
