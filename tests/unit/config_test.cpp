#include "sdxl_dreambooth/config/config.h"
#include "sdxl_dreambooth/config/resume_changes.h"
#include "sdxl_dreambooth/config/schema.h"
#include "sdxl_dreambooth/error.h"
#include "support/process.h"
#include "support/reference.h"

#include <gtest/gtest.h>

using sdxl::UsageError;
using sdxl::config::Config;
using sdxl::config::load_config_text;

namespace {

const char* kMinimal = R"(
[model]
pretrained = "models/tiny-sdxl"
[data]
instance_dir = "subjects/dog"
instance_prompt = "a photo of sks dog"
)";

// The UsageError text of loading `text` (fails the test when it loads).
std::string error_of(const std::string& text, const std::vector<std::string>& overrides = {}) {
  try {
    load_config_text(text, "cfg.toml", overrides);
  } catch (const UsageError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a UsageError for:\n" << text;
  return {};
}

}  // namespace

TEST(Config, DefaultsAreDiffusersDefaults) {
  const Config cfg = load_config_text(kMinimal, "cfg.toml");
  EXPECT_EQ(cfg.get_int("train.batch_size"), 4);
  EXPECT_EQ(cfg.get_int("lora.rank"), 4);
  EXPECT_FALSE(cfg.has("lora.alpha"));
  EXPECT_DOUBLE_EQ(cfg.get_float("train.learning_rate"), 1e-4);
  EXPECT_EQ(cfg.get_string("train.lr_scheduler"), "constant");
  EXPECT_EQ(cfg.get_int("data.resolution"), 1024);
  EXPECT_EQ(cfg.get_int("data.num_class_images"), 100);
  EXPECT_DOUBLE_EQ(cfg.get_float("optimizer.weight_decay"), 1e-4);
  EXPECT_DOUBLE_EQ(cfg.get_float("optimizer.eps"), 1e-8);
  EXPECT_DOUBLE_EQ(cfg.get_float("train.max_grad_norm"), 1.0);
  EXPECT_EQ(cfg.get_list("lora.targets"), (sdxl::config::StringList{"to_q", "to_k", "to_v", "to_out.0"}));
  EXPECT_EQ(cfg.get_string("validation.scheduler"), "dpmpp2m");
  EXPECT_EQ(cfg.origin("train.batch_size"), "default");
  EXPECT_EQ(cfg.origin("data.instance_dir"), "cfg.toml:5");
}

TEST(Config, IntegersAreAcceptedForNumbers) {
  const Config cfg = load_config_text(std::string(kMinimal) + "[train]\nlearning_rate = 1\n", "cfg.toml");
  EXPECT_DOUBLE_EQ(cfg.get_float("train.learning_rate"), 1.0);
}

TEST(Config, UnknownKeySuggestsNearest) {
  const std::string e = error_of(std::string(kMinimal) + "[train]\nbatchsize = 2\n");
  EXPECT_NE(e.find("cfg.toml:8"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown key 'train.batchsize'"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean 'train.batch_size'"), std::string::npos) << e;
}

TEST(Config, UnknownSectionSuggestsNearest) {
  const std::string e = error_of(std::string(kMinimal) + "[trian]\nseed = 2\n");
  EXPECT_NE(e.find("unknown section 'trian'"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean 'train'"), std::string::npos) << e;
}

TEST(Config, WrongType) {
  const std::string e = error_of(std::string(kMinimal) + "[train]\nbatch_size = \"two\"\n");
  EXPECT_NE(e.find("cfg.toml:8: train.batch_size: expected an integer in [1, 4096], got the string 'two'"),
            std::string::npos)
      << e;
  EXPECT_NE(error_of(std::string(kMinimal) + "[train]\nbatch_size = 1.5\n").find("got the number 1.5"),
            std::string::npos);
  EXPECT_NE(error_of(std::string(kMinimal) + "[lora]\ntargets = \"to_q\"\n").find("expected a non-empty list"),
            std::string::npos);
}

TEST(Config, OutOfRange) {
  const std::string e = error_of(std::string(kMinimal) + "[train]\nbatch_size = 0\n");
  EXPECT_NE(e.find("train.batch_size: expected an integer in [1, 4096], got 0"), std::string::npos) << e;
  EXPECT_NE(error_of(std::string(kMinimal) + "[train]\nlearning_rate = 0.0\n").find("a number in (0.0, "),
            std::string::npos);
  EXPECT_NE(error_of(std::string(kMinimal) + "[train]\nlearning_rate = nan\n").find("train.learning_rate"),
            std::string::npos);
}

TEST(Config, NotAmongChoices) {
  const std::string e = error_of(std::string(kMinimal) + "[train]\nlr_scheduler = \"cosin\"\n");
  EXPECT_NE(e.find("expected one of constant, constant_with_warmup, linear, cosine"), std::string::npos) << e;
  EXPECT_NE(e.find("got the string 'cosin'"), std::string::npos) << e;
}

TEST(Config, MissingRequiredKey) {
  const std::string e = error_of("[model]\npretrained = \"x\"\n");
  EXPECT_NE(e.find("cfg.toml: missing required key 'data.instance_dir'"), std::string::npos) << e;
  EXPECT_NE(e.find("missing required key 'data.instance_prompt'"), std::string::npos) << e;
}

TEST(Config, NotToml) {
  const std::string e = error_of("[model\npretrained = 1\n");
  EXPECT_NE(e.find("cfg.toml:1: not valid TOML"), std::string::npos) << e;
}

TEST(Config, UnreadableFile) {
  try {
    sdxl::config::load_config_file("/nonexistent/dir/cfg.toml");
    FAIL();
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot read config file '/nonexistent/dir/cfg.toml'"), std::string::npos);
  }
}

TEST(Config, ContradictorySettings) {
  const std::string prior = error_of(std::string(kMinimal) + "[prior]\nenabled = true\n");
  EXPECT_NE(prior.find("cfg.toml:8: prior.enabled = true needs data.class_dir to be set"), std::string::npos) << prior;
  EXPECT_NE(prior.find("needs data.class_prompt"), std::string::npos) << prior;
  EXPECT_NE(error_of(std::string(kMinimal) + "[validation]\nevery_steps = 5\nevery_epochs = 2\n").find("both set"),
            std::string::npos);
  EXPECT_NE(error_of(std::string(kMinimal), {"data.resolution=1020"}).find("multiple of 8"), std::string::npos);
  EXPECT_NE(error_of(std::string(kMinimal), {"train.max_steps=10", "train.lr_warmup_steps=20"}).find("exceeds"),
            std::string::npos);
}

TEST(Config, SetOverridesAreCheckedLikeTheFile) {
  const Config cfg = load_config_text(
      kMinimal, "cfg.toml",
      {"train.batch_size=2", "data.instance_prompt=a photo of zwx cat", "lora.targets=[\"to_q\"]", "lora.alpha=8"});
  EXPECT_EQ(cfg.get_int("train.batch_size"), 2);
  EXPECT_EQ(cfg.origin("train.batch_size"), "--set train.batch_size=2");
  EXPECT_EQ(cfg.get_string("data.instance_prompt"), "a photo of zwx cat");
  EXPECT_EQ(cfg.get_list("lora.targets"), (sdxl::config::StringList{"to_q"}));
  EXPECT_DOUBLE_EQ(cfg.get_float("lora.alpha"), 8.0);

  EXPECT_NE(error_of(kMinimal, {"train.batch_size=abc"})
                .find("--set train.batch_size=abc: train.batch_size: expected an integer"),
            std::string::npos);
  EXPECT_NE(error_of(kMinimal, {"train.batchsize=2"}).find("did you mean 'train.batch_size'"), std::string::npos);
  EXPECT_NE(error_of(kMinimal, {"nonsense"}).find("expected section.key=value"), std::string::npos);
  EXPECT_NE(error_of(kMinimal, {"train.mixed_precision=fp8"}).find("one of no, fp16, bf16"), std::string::npos);
  // A second line is not silently dropped, and a broken quote is not part of the value.
  EXPECT_NE(error_of(kMinimal, {"train.batch_size=2\nfoo"}).find("train.batch_size: the value must be on one line"),
            std::string::npos);
  EXPECT_NE(error_of(kMinimal, {"data.instance_prompt=a\nb"}).find("must be on one line"), std::string::npos);
  const std::string unterminated = error_of(kMinimal, {"model.pretrained=\"unterminated"});
  EXPECT_NE(unterminated.find("model.pretrained: '\"unterminated' is not a valid TOML value"), std::string::npos)
      << unterminated;
  EXPECT_NE(error_of(kMinimal, {"lora.targets=[\"to_q\""}).find("not a valid TOML value"), std::string::npos);
  // Values that would overflow or underflow float32, and paths that name nothing.
  EXPECT_NE(error_of(kMinimal, {"train.learning_rate=1e300"}).find("train.learning_rate: expected a number in (0.0, "),
            std::string::npos);
  EXPECT_NE(error_of(kMinimal, {"optimizer.eps=1e-320"}).find("optimizer.eps: expected a number in"), std::string::npos);
  EXPECT_NE(error_of(kMinimal, {"output.dir=\"\""}).find("output.dir: expected a folder path"), std::string::npos);
  // Every key naming a path refuses '' in the parse (exit 2), subsets' keys too.
  for (const char* key : {"data.class_dir", "data.cache_dir", "checkpoint.dir", "model.vae", "data.instance_dir"}) {
    const std::string e = error_of(kMinimal, {std::string(key) + "=\"\""});
    EXPECT_NE(e.find(std::string(key) + ": expected a folder path"), std::string::npos) << e;
  }
  EXPECT_NE(error_of(kMinimal, {"model.pretrained=\"\""}).find("model.pretrained: expected a folder path or hub id"),
            std::string::npos);
  EXPECT_NE(error_of(kMinimal, {"checkpoint.resume=\"\""})
                .find("checkpoint.resume: expected \"none\", \"latest\" or a checkpoint path"),
            std::string::npos);
  for (const char* ext : {"\"txt\"", "\"\"", "\".\""}) {
    EXPECT_NE(error_of(kMinimal, {std::string("data.caption_ext=") + ext}).find("data.caption_ext: expected a file "
                                                                              "extension starting with '.'"),
              std::string::npos)
        << ext;
  }
}

TEST(Config, AllErrorsAreReportedOneLineEach) {
  const std::string e = error_of(std::string(kMinimal) + "[train]\nbatch_size = 0\nseeed = 1\n");
  EXPECT_NE(e.find("train.batch_size"), std::string::npos);
  EXPECT_NE(e.find("train.seeed"), std::string::npos);
  EXPECT_EQ(std::count(e.begin(), e.end(), '\n'), 1) << e;
}

TEST(Config, TomlRoundTrip) {
  const Config cfg = load_config_text(kMinimal, "cfg.toml", {"validation.prompts=[\"a \\\"quoted\\\" prompt\"]"});
  const Config again = load_config_text(cfg.to_toml(), "round-trip.toml");
  for (const auto& k : sdxl::config::schema()) {
    EXPECT_EQ(cfg.value(k.key), again.value(k.key)) << k.key;
  }
}

// Every key lands in its own RunConfig member with its value: a key bound to another key's
// member, or with a member of the wrong type, fails here.
TEST(Config, EveryKeyIsBoundToItsOwnTypedMember) {
  using sdxl::config::Value;
  sdxl::config::RunConfig run;
  std::vector<Value> written;
  int i = 0;
  for (const auto& k : sdxl::config::schema()) {
    ++i;
    Value v;
    switch (k.type) {
      case sdxl::config::ValueType::kBool: v = (i % 2 == 0); break;
      case sdxl::config::ValueType::kInt: v = std::int64_t{1000 + i}; break;
      case sdxl::config::ValueType::kFloat: v = 0.5 + i; break;
      case sdxl::config::ValueType::kString: v = "value " + std::to_string(i); break;
      case sdxl::config::ValueType::kStringList: v = sdxl::config::StringList{"item " + std::to_string(i)}; break;
    }
    ASSERT_NO_THROW(k.write(run, v)) << k.key;
    written.push_back(v);
  }
  // Booleans alternate, so two booleans sharing a member would read back wrong for one of them.
  std::size_t j = 0;
  for (const auto& k : sdxl::config::schema()) EXPECT_EQ(k.read(run), written[j++]) << k.key;
}

TEST(Config, TypedConfigHoldsTheLoadedValues) {
  const Config cfg = load_config_text(kMinimal, "cfg.toml",
                                      {"train.batch_size=3", "lora.alpha=8", "validation.prompts=[\"a\", \"b\"]"});
  const sdxl::config::RunConfig run = cfg.typed();
  for (const auto& k : sdxl::config::schema()) EXPECT_EQ(k.read(run), cfg.value(k.key)) << k.key;
  EXPECT_EQ(run.train.batch_size, 3);
  EXPECT_EQ(run.lora.alpha, std::optional<double>(8.0));
  EXPECT_FALSE(run.train.seed.has_value());
  EXPECT_EQ(run.validation.prompts, (sdxl::config::StringList{"a", "b"}));
  EXPECT_EQ(run.model.revision, "main");
  // What runs and checkpoints record (train_config.toml) is the same text either way.
  EXPECT_EQ(sdxl::config::to_toml(run), cfg.to_toml());
}

TEST(Config, ReferenceDocIsUpToDate) {
  const auto doc = sdxl::test::read_file(sdxl::test::project_dir() / "docs" / "config-reference.md");
  EXPECT_EQ(doc, sdxl::config::config_reference_markdown())
      << "docs/config-reference.md is stale: run `sdxl-dreambooth config-reference > docs/config-reference.md`";
}

TEST(Config, ShippedConfigsAreValid) {
  for (const char* name : {"sdxl-dog.toml", "tiny.toml"}) {
    const auto path = sdxl::test::project_dir() / "configs" / name;
    EXPECT_NO_THROW(sdxl::config::load_config_file(path.string())) << path;
  }
}

TEST(Config, SdxlDogReproducesTheRayTrainRun) {
  const Config cfg = sdxl::config::load_config_file((sdxl::test::project_dir() / "configs" / "sdxl-dog.toml").string());
  EXPECT_EQ(cfg.get_string("model.pretrained"), "stabilityai/stable-diffusion-xl-base-1.0");
  EXPECT_EQ(cfg.get_string("model.vae"), "madebyollin/sdxl-vae-fp16-fix");
  EXPECT_EQ(cfg.get_string("data.instance_prompt"), "a photo of sks dog");
  EXPECT_EQ(cfg.get_int("data.resolution"), 1024);
  EXPECT_EQ(cfg.get_int("train.batch_size"), 1);
  EXPECT_EQ(cfg.get_int("train.grad_accum"), 1);
  EXPECT_DOUBLE_EQ(cfg.get_float("train.learning_rate"), 1e-4);
  EXPECT_EQ(cfg.get_string("train.lr_scheduler"), "constant");
  EXPECT_EQ(cfg.get_int("train.lr_warmup_steps"), 0);
  EXPECT_EQ(cfg.get_int("train.max_steps"), 100);
  EXPECT_EQ(cfg.get_int("checkpoint.every_steps"), 100);
  EXPECT_EQ(cfg.get_string("train.mixed_precision"), "fp16");
  EXPECT_EQ(cfg.get_int("train.seed"), 0);
  EXPECT_EQ(cfg.get_int("lora.rank"), 4);
  EXPECT_EQ(cfg.get_int("validation.every_epochs"), 25);
  EXPECT_EQ(cfg.get_list("validation.prompts"), (sdxl::config::StringList{"sks dog at the beach"}));
}

TEST(Config, PivotalTuningKeysAreChecked) {
  const std::string both = error_of(kMinimal, {"lora.train_text_encoder_ti=true", "lora.train_text_encoder=true"});
  EXPECT_NE(both.find("lora.train_text_encoder_ti and lora.train_text_encoder"), std::string::npos) << both;
  const std::string empty = error_of(kMinimal, {"lora.train_text_encoder_ti=true", "lora.token_abstraction=\"TOK,,X\""});
  EXPECT_NE(empty.find("lora.token_abstraction: 'TOK,,X' has an empty abstraction"), std::string::npos) << empty;
  const std::string twice = error_of(kMinimal, {"lora.train_text_encoder_ti=true", "lora.token_abstraction=\"A, A\""});
  EXPECT_NE(twice.find("'A' is listed twice"), std::string::npos) << twice;
  const std::string angle = error_of(kMinimal, {"lora.train_text_encoder_ti=true", "lora.token_abstraction=\"<s0>\""});
  EXPECT_NE(angle.find("contains '<' or '>'"), std::string::npos) << angle;
  const std::string frac = error_of(kMinimal, {"lora.train_text_encoder_ti_frac=0"});
  EXPECT_NE(frac.find("lora.train_text_encoder_ti_frac"), std::string::npos) << frac;
  const std::string graphs = error_of(kMinimal, {"lora.train_text_encoder_ti=true", "train.cuda_graphs=true"});
  EXPECT_NE(graphs.find("captured CUDA graph"), std::string::npos) << graphs;
  const std::string spaced =
      error_of(kMinimal, {"lora.train_text_encoder_ti=true", "lora.token_abstraction=\"my dog\""});
  EXPECT_NE(spaced.find("'my dog' contains whitespace or a control character; an abstraction is one word"),
            std::string::npos)
      << spaced;
  // A list where one string is expected is an error, not the list's text.
  const std::string list = error_of(kMinimal, {"lora.token_abstraction=[\"TOK\", \"X\"]"});
  EXPECT_NE(list.find("lora.token_abstraction: expected a string"), std::string::npos) << list;
  // Without pivotal tuning the abstraction is not read.
  EXPECT_NO_THROW(load_config_text(kMinimal, "cfg.toml", {"lora.token_abstraction=\"TOK,,X\""}));
}

TEST(Config, ConvRankNeedsConvolutionTargets) {
  const std::string e = error_of(kMinimal, {"lora.conv_rank=2"});
  EXPECT_NE(e.find("lora.conv_rank applies to 3x3 convolutions, which no LoRA target names"), std::string::npos) << e;
  EXPECT_FALSE(error_of(kMinimal, {"lora.preset=\"kohya\"", "lora.conv_alpha=2"}).empty());
  EXPECT_NO_THROW(load_config_text(kMinimal, "cfg.toml", {"lora.preset=\"kohya_conv\"", "lora.conv_rank=2"}));
  EXPECT_NO_THROW(load_config_text(kMinimal, "cfg.toml", {"lora.targets=[\"to_q\", \"conv1\"]", "lora.conv_rank=2"}));
}

// The resume warning names what changes a step: not a path spelled another way, nor a key
// that acts in neither run.
TEST(ResumeChanges, NamesOnlyChangesThatAct) {
  const auto changes = [](const std::vector<std::string>& was, const std::vector<std::string>& now) {
    return sdxl::config::resume_changes(load_config_text(kMinimal, "was.toml", was).typed(),
                                        load_config_text(kMinimal, "now.toml", now).typed());
  };
  EXPECT_TRUE(changes({}, {"data.instance_dir=\"./subjects//dog/\""}).empty());
  EXPECT_TRUE(changes({}, {"data.class_dir=\"elsewhere\"", "prior.loss_weight=0.5", "optimizer.prodigy_d_coef=2",
                           "train.huber_c=0.3", "train.lr_power=2"})
                  .empty());
  EXPECT_EQ(changes({}, {"data.instance_dir=\"subjects/cat\""}),
            (std::vector<std::string>{"data.instance_dir (\"subjects/dog\" → \"subjects/cat\")"}));
  const auto prior = changes({"prior.enabled=true", "data.class_dir=\"c\"", "data.class_prompt=\"dog\""},
                             {"prior.enabled=true", "data.class_dir=\"c\"", "data.class_prompt=\"dog\"",
                              "prior.loss_weight=0.5"});
  EXPECT_EQ(prior, (std::vector<std::string>{"prior.loss_weight (1.0 → 0.5)"}));
  // Turning a setting on names it and the keys it brings into play.
  const auto on = changes({}, {"train.loss=\"huber\"", "train.huber_c=0.3"});
  EXPECT_EQ(on.size(), 2u);
}

// A dotted key of tens of thousands of parts overflowed toml++'s stack (SIGSEGV): refused first,
// naming the line; ordinary dotted keys and values with dots are untouched.
TEST(Config, AbsurdlyDeepKeysAreRefusedNotCrashedOn) {
  std::string deep = "[a";
  for (int i = 0; i < 50000; ++i) deep += ".a";
  deep += "]\n";
  EXPECT_NE(error_of(std::string(kMinimal) + deep).find("cfg.toml:7: a key of more than 64 dotted parts"),
            std::string::npos);
  std::string dotted = "x";
  for (int i = 0; i < 50000; ++i) dotted += ".x";
  EXPECT_NE(error_of(dotted + " = 1\n").find("cfg.toml:1: a key of more than 64"), std::string::npos);
  EXPECT_NO_THROW(load_config_text(std::string(kMinimal) + "[train]\nlearning_rate = 1.5e-4\n", "cfg.toml",
                                   {"data.instance_prompt=\"a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z\""}));
}
