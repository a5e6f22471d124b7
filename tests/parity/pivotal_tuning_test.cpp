// Pivotal tuning's parts on the tiny reference pipeline: the tokenizers read TOK as the new
// tokens (split out before BPE, as transformers' added tokens), the new rows take the whole
// gradient while every weight of the text encoders stays put, and the renormalisation after
// each step is the advanced diffusers script's formula.
#include "parity_support.h"
#include "sdxl_dreambooth/io/safetensors_torch.h"
#include "sdxl_dreambooth/model/token_embeddings_file.h"
#include "sdxl_dreambooth/nn/prompt_encoding.h"
#include "sdxl_dreambooth/pipeline/sdxl_pipeline.h"
#include "sdxl_dreambooth/text/clip_tokenizer.h"
#include "sdxl_dreambooth/train/pivotal_tuning.h"
#include "support/process.h"

using namespace sdxl;

namespace {

config::LoraConfig pivotal_lora(const std::string& abstraction = "TOK") {
  config::LoraConfig lora;
  lora.train_text_encoder_ti = true;
  lora.token_abstraction = abstraction;
  lora.num_new_tokens_per_abstraction = 2;
  return lora;
}

std::vector<std::int64_t> concat(std::vector<std::int64_t> a, const std::vector<std::int64_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

torch::Tensor ids_of(const text::ClipTokenizer& tok, const std::string& prompt) {
  return torch::tensor(tok.tokenize(prompt), torch::kLong).unsqueeze(0);
}

}  // namespace

TEST(PivotalTuning, AbstractionsNameConsecutiveTokensAndLongerOnesWin) {
  const auto a = text::TokenAbstractions::parse(" TOK , TOK2", 2);
  EXPECT_EQ(a.tokens(), (std::vector<std::string>{"<s0>", "<s1>", "<s2>", "<s3>"}));
  EXPECT_EQ(a.describe(), "TOK -> <s0><s1>, TOK2 -> <s2><s3>");
  // diffusers replaces in list order, so its TOK would eat TOK2; the longer one goes first here.
  EXPECT_EQ(a.apply("TOK2 and TOK, xTOKy"), "<s2><s3> and <s0><s1>, x<s0><s1>y");
  EXPECT_EQ(a.apply("tok stays"), "tok stays");
  EXPECT_EQ(train::PivotalTuning::pivot_step(0.5, 20), 10);
  EXPECT_EQ(train::PivotalTuning::pivot_step(0.3, 10), 3);
  EXPECT_EQ(train::PivotalTuning::pivot_step(1.0, 7), 7);
  EXPECT_EQ(train::PivotalTuning::pivot_step(0.1, 5), 0);
}

TEST(PivotalTuning, TokenizersSplitTheNewTokensOutBeforeBpe) {
  SDXL_REQUIRE_REFERENCE();
  for (const char* name : {"tokenizer", "tokenizer_2"}) {
    const auto base = text::ClipTokenizer::load(test::tiny_sdxl() / name);
    auto tok = base;
    const std::int64_t first = tok.add_tokens(text::TokenAbstractions::parse("TOK", 2));
    EXPECT_EQ(first, 49408) << name;  // after vocab.json's ids, as transformers' add_special_tokens
    const auto expected =
        concat(concat(base.encode("a photo of"), {first, first + 1}), base.encode("cat"));
    EXPECT_EQ(tok.encode("a photo of TOK cat"), expected) << name;
    EXPECT_EQ(tok.encode("a photo of <s0><s1> cat"), expected) << name;  // the tokens themselves
    EXPECT_EQ(tok.encode("a photo of tok <S0> cat"), base.encode("a photo of tok <S0> cat")) << name;  // case matters
    tok.set_added_tokens_enabled(false);
    EXPECT_EQ(tok.tokenize("a photo of TOK cat"), base.tokenize("a photo of TOK cat")) << name;
  }
}

TEST(PivotalTuning, OnlyTheNewRowsTakeAGradientAndTheTablesStayPut) {
  SDXL_REQUIRE_REFERENCE();
  auto pipe = pipeline::SdxlPipeline::load({test::tiny_sdxl().string()});
  const torch::Tensor table_l = pipe.text_encoder->text_model->embeddings->token_embedding->weight.detach().clone();
  const torch::Tensor table_g = pipe.text_encoder_2->text_model->embeddings->token_embedding->weight.detach().clone();
  auto init = at::detail::createCPUGenerator(7);
  const auto pivotal = train::PivotalTuning::start(pivotal_lora(), pipe, init);
  ASSERT_TRUE(pivotal);
  const auto params = pivotal->parameters();
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[0].sizes(), (std::vector<std::int64_t>{2, 32}));
  // diffusers' init: randn × the table's standard deviation.
  EXPECT_NEAR(params[0].std().item<double>(), table_l.std().item<double>(), 0.5 * table_l.std().item<double>());

  const auto e = nn::encode_prompt(pipe.text_encoder, pipe.text_encoder_2, ids_of(*pipe.tokenizer, "a photo of TOK cat"),
                                   ids_of(*pipe.tokenizer_2, "a photo of TOK cat"));
  (e.prompt_embeds.square().sum() + e.pooled_prompt_embeds.square().sum()).backward();
  for (const auto& p : params) {
    ASSERT_TRUE(p.grad().defined());
    EXPECT_GT(p.grad().abs().sum().item<double>(), 0.0);
  }
  for (auto* encoder : {&pipe.text_encoder, &pipe.text_encoder_2}) {
    for (const auto& p : (*encoder)->parameters()) {
      EXPECT_FALSE(p.requires_grad());
      EXPECT_FALSE(p.grad().defined());
    }
  }
  // An update of the rows (what the optimizer does) leaves every table row as loaded.
  {
    torch::NoGradGuard no_grad;
    for (const auto& p : params) p.sub_(p.grad());
  }
  pivotal->renormalize();
  EXPECT_TRUE(torch::equal(pipe.text_encoder->text_model->embeddings->token_embedding->weight, table_l));
  EXPECT_TRUE(torch::equal(pipe.text_encoder_2->text_model->embeddings->token_embedding->weight, table_g));
  // ... and a prompt without TOK reads exactly what the base model reads.
  auto base = pipeline::SdxlPipeline::load({test::tiny_sdxl().string()});
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(torch::equal(pipe.encode("a photo of a cat").prompt_embeds, base.encode("a photo of a cat").prompt_embeds));
  EXPECT_FALSE(torch::equal(pipe.encode("a photo of TOK cat").prompt_embeds,
                            base.encode("a photo of TOK cat").prompt_embeds));
}

TEST(PivotalTuning, RenormalizeIsTheAdvancedScriptsRetraction) {
  SDXL_REQUIRE_REFERENCE();
  auto pipe = pipeline::SdxlPipeline::load({test::tiny_sdxl().string()});
  const double std_l = pipe.text_encoder->text_model->embeddings->token_embedding->weight.std().item<double>();
  auto init = at::detail::createCPUGenerator(1);
  const auto pivotal = train::PivotalTuning::start(pivotal_lora(), pipe, init);
  torch::Tensor rows = pivotal->parameters()[0];
  {
    torch::NoGradGuard no_grad;
    rows.copy_(torch::arange(64, torch::kFloat).view({2, 32}) / 10.0);
  }
  // By hand: σ of 0, 0.1, ..., 6.3 (unbiased) = sqrt(64 · 65 / 12) / 10 = 1.8618986...
  const double sigma = std::sqrt(64.0 * 65.0 / 12.0) / 10.0;
  const double factor = std::pow(std_l / sigma, 0.1);
  pivotal->renormalize();
  EXPECT_NEAR(rows[1][31].item<double>(), 6.3 * factor, 1e-5);
  EXPECT_NEAR(rows[0][1].item<double>(), 0.1 * factor, 1e-6);
}

TEST(PivotalTuning, EmbeddingsFilesAreCheckedWhenRead) {
  test::TempDir dir;
  const auto rows = torch::randn({2, 8});
  const auto expect_error = [&](const std::string& name, const std::string& message) {
    try {
      model::read_token_embeddings((dir / name).string());
      ADD_FAILURE() << name << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE((std::string(e.what()) + " " + e.hint()).find(message), std::string::npos) << e.what();
    }
  };
  // Ours round-trips; the advanced script's (no metadata) gets <s0>, <s1> and no abstraction.
  model::write_token_embeddings((dir / "ok.safetensors").string(),
                                {text::TokenAbstractions::parse("TOK", 2), rows, rows * 2});
  const auto ok = model::read_token_embeddings((dir / "ok.safetensors").string());
  EXPECT_EQ(ok.abstractions.describe(), "TOK -> <s0><s1>");
  EXPECT_TRUE(torch::equal(ok.clip_g, rows * 2));
  io::write_safetensors((dir / "plain.safetensors").string(), {{"clip_l", rows}, {"clip_g", rows}});
  EXPECT_EQ(model::read_token_embeddings((dir / "plain.safetensors").string()).abstractions.tokens(),
            (std::vector<std::string>{"<s0>", "<s1>"}));

  io::write_safetensors((dir / "int.safetensors").string(),
                        {{"clip_l", rows.to(torch::kInt)}, {"clip_g", rows}});
  expect_error("int.safetensors", "\"clip_l\" is I32; embeddings are floating point");
  io::write_safetensors((dir / "empty-name.safetensors").string(), {{"clip_l", rows}, {"clip_g", rows}},
                        {{"sdxl_dreambooth.token_abstractions", R"({"":["<s0>","<s1>"]})"}});
  expect_error("empty-name.safetensors", "'' is empty");
  io::write_safetensors((dir / "angle.safetensors").string(), {{"clip_l", rows}, {"clip_g", rows}},
                        {{"sdxl_dreambooth.token_abstractions", R"({"<s0>":["<s0>","<s1>"]})"}});
  expect_error("angle.safetensors", "contains '<' or '>'");
  io::write_safetensors((dir / "blank-token.safetensors").string(), {{"clip_l", rows}, {"clip_g", rows}},
                        {{"sdxl_dreambooth.token_abstractions", R"({"TOK":["",""]})"}});
  expect_error("blank-token.safetensors", "the token '' of 'TOK' is empty");
  io::write_safetensors((dir / "renamed.safetensors").string(), {{"clip_l", rows}, {"clip_g", rows}},
                        {{"sdxl_dreambooth.token_abstractions", R"({"TOK":["<s0>","<s7>"]})"}});
  expect_error("renamed.safetensors", "names '<s7>' for row 1; the rows are the tokens <s0> to <s1>, in order");
  test::write_file(dir / "ckpt.h5", std::string("\x89HDF\r\n\x1a\n", 8) + std::string(64, '\0'));
  expect_error("ckpt.h5", "export");
}
