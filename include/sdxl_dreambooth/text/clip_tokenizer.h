// CLIP's byte-level BPE tokenizer, as OpenAI's CLIP (and SDXL) use it: text clean-up,
// lower-casing, CLIP's pre-tokenization pattern, byte-to-unicode mapping, BPE merges with
// "</w>" word ends, then 77 ids = BOS, up to 75 tokens, EOS, padding.
#pragma once

#include "sdxl_dreambooth/text/token_abstractions.h"

#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace sdxl::text {

class ClipTokenizer {
 public:
  // Loads vocab.json and merges.txt; the pad token comes from special_tokens_map.json or
  // tokenizer_config.json ("<|endoftext|>" for SDXL's tokenizer, "!" for tokenizer_2).
  static ClipTokenizer load(const std::filesystem::path& dir);
  ClipTokenizer(std::unordered_map<std::string, std::int64_t> vocab,
                std::vector<std::pair<std::string, std::string>> merges, const std::string& pad_token,
                std::size_t model_max_length = 77, std::string source = "tokenizer");
  ClipTokenizer(const ClipTokenizer& other);

  // Pivotal tuning: the abstractions' new tokens get the ids after vocab.json's (as
  // transformers' add_special_tokens gives them) and are matched whole and case-sensitive in
  // the text before the rest is cleaned and split; every text is first rewritten with
  // `abstractions` (TOK -> <s0><s1>). Returns the first new id.
  std::int64_t add_tokens(const TokenAbstractions& abstractions);
  const TokenAbstractions& abstractions() const { return abstractions_; }
  // While false, encode() ignores the added tokens and the rewrite: the base model's reading.
  void set_added_tokens_enabled(bool enabled) { added_enabled_ = enabled; }

  // The BPE token ids of `text` without BOS/EOS. Throws sdxl::Error on invalid UTF-8.
  std::vector<std::int64_t> encode(const std::string& text) const;
  // model_max_length ids: BOS, the first (max - 2) tokens, EOS, then the pad id.
  std::vector<std::int64_t> tokenize(const std::string& prompt) const;

  std::int64_t bos_id() const { return bos_; }
  std::int64_t eos_id() const { return eos_; }
  std::int64_t pad_id() const { return pad_; }
  std::size_t model_max_length() const { return max_length_; }
  std::size_t vocab_size() const { return vocab_.size(); }
  // The largest id vocab.json gives (the text encoder's embedding needs that many rows + 1).
  std::int64_t max_id() const;

  // The text clean-up CLIP applies before pre-tokenization: NFC, HTML entities,
  // whitespace runs to one space, trimmed, lower-cased.
  static std::string clean(const std::string& text);
  // CLIP's pre-tokenization of cleaned text (exposed for tests).
  static std::vector<std::string> pre_tokenize(const std::string& cleaned);

 private:
  std::vector<std::string> bpe(const std::string& token) const;
  void encode_plain(const std::string& text, std::vector<std::int64_t>& ids) const;
  std::int64_t id_of(const std::string& piece) const;

  std::unordered_map<std::string, std::int64_t> vocab_;
  std::map<std::pair<std::string, std::string>, std::size_t> ranks_;
  std::int64_t bos_ = 0, eos_ = 0, pad_ = 0;
  std::size_t max_length_ = 77;
  std::string source_;
  TokenAbstractions abstractions_;
  std::vector<std::pair<std::string, std::int64_t>> added_;  // token -> id
  bool added_enabled_ = true;
  std::string byte_to_unicode_[256];
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<std::string>> cache_;  // word -> BPE pieces
};

}  // namespace sdxl::text
