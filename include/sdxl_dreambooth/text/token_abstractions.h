// Pivotal tuning's stand-in words (the advanced diffusers script's --token_abstraction and
// --num_new_tokens_per_abstraction): each abstraction such as "TOK" stands for N new tokens
// "<s0><s1>" that both tokenizers gain and both text encoders learn embeddings for. Prompts,
// captions and validation prompts are rewritten with them before tokenizing.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace sdxl::text {

class TokenAbstractions {
 public:
  using Entry = std::pair<std::string, std::vector<std::string>>;  // "TOK" -> {"<s0>", "<s1>"}

  TokenAbstractions() = default;
  explicit TokenAbstractions(std::vector<Entry> entries);

  // "TOK,TOK2" (spaces around the commas ignored) with `per_abstraction` tokens each:
  // TOK -> <s0><s1>, TOK2 -> <s2><s3>. Throws Error naming what is wrong (see checked).
  static TokenAbstractions parse(const std::string& list, std::int64_t per_abstraction);
  // `entries` read from a file: every abstraction one word (no whitespace, control characters,
  // '<' or '>'; diffusers would squeeze "my dog" to "mydog", which never matches), every token
  // non-empty without whitespace or control characters, none repeated. Throws Error otherwise.
  static TokenAbstractions checked(std::vector<Entry> entries);

  bool empty() const { return entries_.empty(); }
  const std::vector<Entry>& entries() const { return entries_; }
  // Every new token, in id order.
  std::vector<std::string> tokens() const;
  // `prompt` with each abstraction replaced by its tokens, longer abstractions first (diffusers
  // goes in list order, so its "TOK,TOK2" never reaches TOK2).
  std::string apply(const std::string& prompt) const;
  // "TOK -> <s0><s1>, TOK2 -> <s2><s3>".
  std::string describe() const;

 private:
  std::vector<Entry> entries_;
};

}  // namespace sdxl::text
