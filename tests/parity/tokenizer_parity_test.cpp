#include "parity_support.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/text/clip_tokenizer.h"

#include <nlohmann/json.hpp>

#include <fstream>

using namespace sdxl;

TEST(TokenizerParity, ExactIdsForEveryReferencePrompt) {
  SDXL_REQUIRE_REFERENCE();
  std::ifstream in(test::reference_dir() / "vectors" / "tokenizer_prompts.json");
  const auto prompts = nlohmann::json::parse(in).get<std::vector<std::string>>();
  const auto ref = test::vectors("tokenizer");
  for (const char* name : {"tokenizer", "tokenizer_2"}) {
    const auto tok = text::ClipTokenizer::load(test::tiny_sdxl() / name);
    const torch::Tensor expected = ref.tensor(std::string("ids_") + name);
    ASSERT_EQ(expected.size(0), static_cast<std::int64_t>(prompts.size()));
    for (std::size_t i = 0; i < prompts.size(); ++i) {
      const auto ids = tok.tokenize(prompts[i]);
      const auto row = expected[static_cast<std::int64_t>(i)];
      std::vector<std::int64_t> want(row.data_ptr<std::int64_t>(), row.data_ptr<std::int64_t>() + row.numel());
      EXPECT_EQ(ids, want) << name << " prompt " << i << ": '" << prompts[i] << "'";
    }
  }
}

TEST(TokenizerParity, InvalidUtf8IsAClearError) {
  SDXL_REQUIRE_REFERENCE();
  const auto tok = text::ClipTokenizer::load(test::tiny_sdxl() / "tokenizer");
  try {
    tok.tokenize("a photo of \xff\xfe dog");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not valid UTF-8 (bad byte at offset 11)"), std::string::npos) << e.what();
  }
}
