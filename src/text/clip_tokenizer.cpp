#include "sdxl_dreambooth/text/clip_tokenizer.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/util/json_error.h"
#include "sdxl_dreambooth/util/regular_file.h"
#include "sdxl_dreambooth/util/strings.h"

#include <nlohmann/json.hpp>
#include <utf8proc.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;

namespace sdxl::text {

namespace {

constexpr const char* kBos = "<|startoftext|>";
constexpr const char* kEos = "<|endoftext|>";

std::string encode_utf8(utf8proc_int32_t cp) {
  utf8proc_uint8_t buf[4];
  const auto n = utf8proc_encode_char(cp, buf);
  return std::string(reinterpret_cast<const char*>(buf), static_cast<std::size_t>(n));
}

// Decodes UTF-8 into code points; throws naming the byte offset of invalid input.
std::vector<utf8proc_int32_t> decode_utf8(const std::string& s) {
  std::vector<utf8proc_int32_t> out;
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
  utf8proc_ssize_t i = 0, n = static_cast<utf8proc_ssize_t>(s.size());
  while (i < n) {
    utf8proc_int32_t cp = 0;
    const auto len = utf8proc_iterate(p + i, n - i, &cp);
    if (len <= 0) {
      throw Error("prompt is not valid UTF-8 (bad byte at offset " + std::to_string(i) + "): " + util::quoted(s),
                  "prompts must be UTF-8 text");
    }
    out.push_back(cp);
    i += len;
  }
  return out;
}

bool is_letter(utf8proc_int32_t cp) {
  switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO:
      return true;
    default:
      return false;
  }
}

bool is_number(utf8proc_int32_t cp) {
  switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
      return true;
    default:
      return false;
  }
}

// Python's str.isspace() / regex \s for str patterns: the Unicode White_Space characters.
bool is_space(utf8proc_int32_t cp) {
  if ((cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x20) || cp == 0x85 || cp == 0xa0) return true;
  switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_ZS: case UTF8PROC_CATEGORY_ZL: case UTF8PROC_CATEGORY_ZP:
      return true;
    default:
      return false;
  }
}

// html.unescape for numeric references and the named entities prompts actually contain.
std::string html_unescape(const std::string& s) {
  static const std::pair<const char*, const char*> kNamed[] = {
      {"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&apos;", "'"}, {"&#39;", "'"}, {"&nbsp;", "\xc2\xa0"}};
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    if (s[i] != '&') {
      out += s[i++];
      continue;
    }
    bool done = false;
    for (const auto& [name, repl] : kNamed) {
      const std::size_t len = std::strlen(name);
      if (s.compare(i, len, name) == 0) {
        out += repl;
        i += len;
        done = true;
        break;
      }
    }
    if (!done && i + 2 < s.size() && s[i + 1] == '#') {
      const bool hex = s[i + 2] == 'x' || s[i + 2] == 'X';
      std::size_t j = i + (hex ? 3 : 2);
      const std::size_t start = j;
      while (j < s.size() && (hex ? std::isxdigit(static_cast<unsigned char>(s[j])) : std::isdigit(static_cast<unsigned char>(s[j])))) ++j;
      if (j > start && j - start <= 7) {
        const long cp = std::strtol(s.substr(start, j - start).c_str(), nullptr, hex ? 16 : 10);
        if (cp > 0 && cp <= 0x10ffff && utf8proc_codepoint_valid(static_cast<utf8proc_int32_t>(cp))) {
          out += encode_utf8(static_cast<utf8proc_int32_t>(cp));
          i = (j < s.size() && s[j] == ';') ? j + 1 : j;
          done = true;
        }
      }
    }
    if (!done) out += s[i++];
  }
  return out;
}

std::string nfc(const std::string& s) {
  utf8proc_uint8_t* out = utf8proc_NFC(reinterpret_cast<const utf8proc_uint8_t*>(s.c_str()));
  if (!out) return s;
  std::string r(reinterpret_cast<char*>(out));
  std::free(out);
  return r;
}

}  // namespace

std::string ClipTokenizer::clean(const std::string& text) {
  decode_utf8(text);  // validates before anything else
  // ref: OpenAI CLIP simple_tokenizer: whitespace_clean(basic_clean(text)).lower(), where
  // basic_clean = ftfy.fix_text (NFC) + html.unescape twice + strip.
  const std::string unescaped = html_unescape(html_unescape(nfc(text)));
  std::string out;
  bool pending_space = false;
  for (utf8proc_int32_t cp : decode_utf8(unescaped)) {
    if (is_space(cp)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out += ' ';
    pending_space = false;
    if (cp == 0x130) {
      out += "i\xcc\x87";  // Python lowers U+0130 to "i" + combining dot
    } else {
      out += encode_utf8(utf8proc_tolower(cp));
    }
  }
  return out;
}

std::vector<std::string> ClipTokenizer::pre_tokenize(const std::string& cleaned) {
  // ref: <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
  const std::vector<utf8proc_int32_t> cps = decode_utf8(cleaned);
  std::vector<std::string> tokens;
  auto starts_with_ascii = [&](std::size_t i, const char* lit) {
    for (std::size_t k = 0; lit[k]; ++k) {
      if (i + k >= cps.size() || cps[i + k] != static_cast<unsigned char>(lit[k])) return false;
    }
    return true;
  };
  std::size_t i = 0;
  while (i < cps.size()) {
    const utf8proc_int32_t cp = cps[i];
    std::size_t end = i;
    bool matched = false;
    for (const char* lit : {kBos, kEos, "'s", "'t", "'re", "'ve", "'m", "'ll", "'d"}) {
      if (starts_with_ascii(i, lit)) {
        end = i + std::strlen(lit);
        matched = true;
        break;
      }
    }
    if (!matched) {
      if (is_letter(cp)) {
        end = i;
        while (end < cps.size() && is_letter(cps[end])) ++end;
      } else if (is_number(cp)) {
        end = i + 1;
      } else if (!is_space(cp)) {
        end = i;
        while (end < cps.size() && !is_space(cps[end]) && !is_letter(cps[end]) && !is_number(cps[end])) ++end;
      } else {
        ++i;  // whitespace separates tokens
        continue;
      }
    }
    std::string tok;
    for (std::size_t k = i; k < end; ++k) tok += encode_utf8(cps[k]);
    tokens.push_back(std::move(tok));
    i = end;
  }
  return tokens;
}

ClipTokenizer ClipTokenizer::load(const fs::path& dir) {
  const fs::path vocab_path = dir / "vocab.json", merges_path = dir / "merges.txt";
  util::require_regular_file(vocab_path.string());
  util::require_regular_file(merges_path.string());
  std::ifstream vin(vocab_path);
  if (!vin) throw_errno("open", vocab_path.string());
  std::unordered_map<std::string, std::int64_t> vocab;
  try {
    const nlohmann::json j = nlohmann::json::parse(vin);
    if (!j.is_object()) throw Error("'" + vocab_path.string() + "' is not a JSON object of token -> id");
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (!it.value().is_number_integer()) throw Error("'" + vocab_path.string() + "': id of '" + it.key() + "' is not an integer");
      const auto id = it.value().get<std::int64_t>();
      if (id < 0) {
        throw Error("'" + vocab_path.string() + "': id of " + util::quoted(it.key()) + " is " + std::to_string(id) +
                    "; token ids are >= 0");
      }
      vocab[it.key()] = id;
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error("'" + vocab_path.string() + "' is not valid JSON: " + util::json_problem(e));
  }
  std::ifstream min(merges_path);
  if (!min) throw_errno("open", merges_path.string());
  std::vector<std::pair<std::string, std::string>> merges;
  std::string line;
  std::size_t lineno = 0;
  while (std::getline(min, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || util::starts_with(line, "#version")) continue;
    const auto sp = line.find(' ');
    if (sp == std::string::npos || sp == 0 || sp + 1 >= line.size()) {
      throw Error("'" + merges_path.string() + "':" + std::to_string(lineno) + ": expected two symbols, got " +
                  util::quoted(line));
    }
    merges.emplace_back(line.substr(0, sp), line.substr(sp + 1));
  }
  // The pad token: special_tokens_map.json ({"content": ...} or a string), else tokenizer_config.json.
  std::string pad = kEos;
  std::size_t max_len = 77;
  auto token_text = [](const nlohmann::json& v) -> std::string {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
    return {};
  };
  for (const char* name : {"tokenizer_config.json", "special_tokens_map.json"}) {
    std::ifstream in(dir / name);
    if (!in) continue;
    try {
      const nlohmann::json j = nlohmann::json::parse(in);
      if (j.contains("pad_token") && !token_text(j["pad_token"]).empty()) pad = token_text(j["pad_token"]);
      if (j.contains("model_max_length") && j["model_max_length"].is_number_integer()) {
        max_len = j["model_max_length"].get<std::size_t>();
      }
    } catch (const nlohmann::json::exception& e) {
      throw Error("'" + (dir / name).string() + "' is not valid JSON: " + util::json_problem(e));
    }
  }
  if (max_len < 2 || max_len > 4096) throw Error("'" + dir.string() + "': model_max_length must be in [2, 4096]");
  return ClipTokenizer(std::move(vocab), std::move(merges), pad, max_len, dir.string());
}

ClipTokenizer::ClipTokenizer(std::unordered_map<std::string, std::int64_t> vocab,
                             std::vector<std::pair<std::string, std::string>> merges, const std::string& pad_token,
                             std::size_t model_max_length, std::string source)
    : vocab_(std::move(vocab)), max_length_(model_max_length), source_(std::move(source)) {
  for (std::size_t r = 0; r < merges.size(); ++r) ranks_.emplace(merges[r], r);
  // ref: OpenAI CLIP bytes_to_unicode(): printable bytes map to themselves, the rest to 256+n.
  std::vector<int> printable;
  for (int b = '!'; b <= '~'; ++b) printable.push_back(b);
  for (int b = 0xa1; b <= 0xac; ++b) printable.push_back(b);
  for (int b = 0xae; b <= 0xff; ++b) printable.push_back(b);
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    const bool is_printable = std::find(printable.begin(), printable.end(), b) != printable.end();
    byte_to_unicode_[b] = encode_utf8(is_printable ? b : 256 + n++);
  }
  bos_ = id_of(kBos);
  eos_ = id_of(kEos);
  pad_ = id_of(pad_token);
}

ClipTokenizer::ClipTokenizer(const ClipTokenizer& o)
    : vocab_(o.vocab_), ranks_(o.ranks_), bos_(o.bos_), eos_(o.eos_), pad_(o.pad_), max_length_(o.max_length_),
      source_(o.source_), abstractions_(o.abstractions_), added_(o.added_), added_enabled_(o.added_enabled_) {
  for (int b = 0; b < 256; ++b) byte_to_unicode_[b] = o.byte_to_unicode_[b];
}

std::int64_t ClipTokenizer::id_of(const std::string& piece) const {
  auto it = vocab_.find(piece);
  if (it == vocab_.end()) {
    throw Error("tokenizer '" + source_ + "': " + util::quoted(piece) + " is not in vocab.json",
                "the vocabulary and merges.txt do not belong together, or a special token is missing");
  }
  return it->second;
}

std::vector<std::string> ClipTokenizer::bpe(const std::string& token) const {
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(token);
    if (it != cache_.end()) return it->second;
  }
  std::vector<std::string> word;
  if (token == kBos || token == kEos) {
    word = {token};
  } else {
    // Symbols: each byte's unicode stand-in; the last carries the "</w>" word end.
    for (unsigned char c : token) word.push_back(byte_to_unicode_[c]);
    word.back() += "</w>";
    while (word.size() > 1) {
      std::size_t best_rank = SIZE_MAX, best = 0;
      for (std::size_t k = 0; k + 1 < word.size(); ++k) {
        auto it = ranks_.find({word[k], word[k + 1]});
        if (it != ranks_.end() && it->second < best_rank) {
          best_rank = it->second;
          best = k;
        }
      }
      if (best_rank == SIZE_MAX) break;
      const std::string first = word[best], second = word[best + 1];
      std::vector<std::string> merged;
      for (std::size_t k = 0; k < word.size();) {
        if (k + 1 < word.size() && word[k] == first && word[k + 1] == second) {
          merged.push_back(first + second);
          k += 2;
        } else {
          merged.push_back(word[k++]);
        }
      }
      word = std::move(merged);
    }
  }
  std::lock_guard<std::mutex> lock(cache_mutex_);
  cache_.emplace(token, word);
  return word;
}

std::int64_t ClipTokenizer::add_tokens(const TokenAbstractions& abstractions) {
  if (!added_.empty()) throw Error("internal: tokenizer '" + source_ + "' already has added tokens");
  const std::int64_t first = max_id() + 1;
  std::int64_t id = first;
  for (const std::string& token : abstractions.tokens()) {
    if (token.empty()) throw Error("tokenizer '" + source_ + "': an added token is empty");
    for (const auto& a : added_) {
      if (a.first == token) throw Error("tokenizer '" + source_ + "': the new token " + util::quoted(token) + " is listed twice");
    }
    if (vocab_.count(token)) {
      throw Error("tokenizer '" + source_ + "': the new token " + util::quoted(token) + " is already in vocab.json");
    }
    added_.emplace_back(token, id++);
  }
  // Longest first, so the match at a position is the longest one (transformers' trie).
  std::stable_sort(added_.begin(), added_.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  abstractions_ = abstractions;
  return first;
}

void ClipTokenizer::encode_plain(const std::string& text, std::vector<std::int64_t>& ids) const {
  for (const std::string& tok : pre_tokenize(clean(text))) {
    for (const std::string& piece : bpe(tok)) ids.push_back(id_of(piece));
  }
}

std::vector<std::int64_t> ClipTokenizer::encode(const std::string& text_in) const {
  std::vector<std::int64_t> ids;
  if (added_.empty() || !added_enabled_) {
    encode_plain(text_in, ids);
    return ids;
  }
  // ref: transformers PreTrainedTokenizer.tokenize: the text is split at the added tokens
  // first; each piece between them is cleaned and BPE-encoded on its own.
  const std::string text = abstractions_.apply(text_in);
  std::size_t piece_start = 0;
  for (std::size_t i = 0; i < text.size();) {
    const std::pair<std::string, std::int64_t>* hit = nullptr;
    for (const auto& a : added_) {
      if (text.compare(i, a.first.size(), a.first) == 0) {
        hit = &a;
        break;
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    encode_plain(text.substr(piece_start, i - piece_start), ids);
    ids.push_back(hit->second);
    i += hit->first.size();
    piece_start = i;
  }
  encode_plain(text.substr(piece_start), ids);
  return ids;
}

std::vector<std::int64_t> ClipTokenizer::tokenize(const std::string& prompt) const {
  const std::vector<std::int64_t> tokens = encode(prompt);
  std::vector<std::int64_t> ids;
  ids.reserve(max_length_);
  ids.push_back(bos_);
  for (std::size_t k = 0; k < tokens.size() && ids.size() < max_length_ - 1; ++k) ids.push_back(tokens[k]);
  ids.push_back(eos_);
  while (ids.size() < max_length_) ids.push_back(pad_);
  return ids;
}

std::int64_t ClipTokenizer::max_id() const {
  std::int64_t m = 0;
  for (const auto& [piece, id] : vocab_) m = std::max(m, id);
  return m;
}

}  // namespace sdxl::text
