// Pivotal tuning (lora.train_text_encoder_ti) end to end through the real binary: the
// embeddings file as the advanced diffusers script writes it, the embeddings trained until the
// pivot and only renormalised after it, a preempted run resuming to the same bits, and
// `generate --lora --embeddings` drawing the run's last validation image.
#include "sdxl_dreambooth/io/png_writer.h"
#include "sdxl_dreambooth/io/safetensors.h"
#include "sdxl_dreambooth/train/checkpoint_file.h"
#include "support/generated_pixels.h"
#include "support/process.h"
#include "support/reference.h"

#include <gtest/gtest.h>

#include <sstream>

using namespace sdxl;
namespace fs = std::filesystem;

namespace {

std::string pivotal_run_config(const fs::path& out) {
  std::ostringstream s;
  s << "[model]\npretrained = \"" << (test::reference_dir() / "tiny-sdxl").string() << "\"\n"
    << "[data]\ninstance_dir = \"" << (test::subjects_dir() / "chelsea").string() << "\"\n"
    << "instance_prompt = \"a photo of TOK cat\"\nresolution = 64\ncenter_crop = true\n"
    << "[lora]\ntrain_text_encoder_ti = true\ntext_encoder_lr = 1e-2\n"
    << "[train]\nseed = 0\nlearning_rate = 1e-3\nbatch_size = 1\nmax_steps = 6\n"
    << "[checkpoint]\nevery_steps = 3\n"
    << "[validation]\nprompts = [\"TOK cat on a sofa\"]\nevery_steps = 6\nnum_images = 1\nsteps = 3\n"
    << "resolution = 64\n"
    << "[output]\ndir = \"" << out.string() << "\"\n";
  return s.str();
}

const train::AdapterParam& token_rows(const train::Checkpoint& c, const std::string& half) {
  for (const auto& p : c.tokens->params) {
    if (p.half == half) return p;
  }
  throw std::runtime_error("no " + half);
}

}  // namespace

TEST(PivotalTraining, EmbeddingsFileResumeAndGenerate) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  test::write_file(dir / "straight.toml", pivotal_run_config(dir / "out"));
  test::write_file(dir / "stopped.toml", pivotal_run_config(dir / "out2"));
  const auto straight = test::run_cli({"train", (dir / "straight.toml").string()});
  ASSERT_EQ(straight.exit_code, 0) << straight.err;
  EXPECT_NE(straight.err.find("pivotal tuning of TOK -> <s0><s1>"), std::string::npos) << straight.err;
  EXPECT_NE(straight.err.find("step 4: pivotal tuning's embeddings are frozen from here on"), std::string::npos)
      << straight.err;

  // <output name>_emb.safetensors with clip_l and clip_g, as the advanced script writes it.
  const std::string emb = (dir / "out" / "out_emb.safetensors").string();
  const auto file = io::SafetensorsFile::open(emb);
  ASSERT_EQ(file->tensors().size(), 2u);
  ASSERT_NE(file->find("clip_l"), nullptr);
  ASSERT_NE(file->find("clip_g"), nullptr);
  EXPECT_EQ(file->find("clip_l")->shape, (std::vector<std::int64_t>{2, 32}));
  EXPECT_EQ(file->metadata().at("sdxl_dreambooth.token_abstractions"), R"({"TOK":["<s0>","<s1>"]})");

  // The model card loads both files as the advanced script's card does, prompt rewritten.
  const std::string card = test::read_file(dir / "out" / "README.md");
  EXPECT_NE(card.find("pipeline.load_textual_inversion(state_dict['clip_g'], token=['<s0>', '<s1>'], "
                      "text_encoder=pipeline.text_encoder_2, tokenizer=pipeline.tokenizer_2)"),
            std::string::npos)
      << card;
  EXPECT_NE(card.find("image = pipeline('a photo of <s0><s1> cat')"), std::string::npos) << card;

  // Trained until the pivot (step 3), then only scaled by the renormalisation.
  const auto at3 = train::read_checkpoint_file((dir / "out" / "checkpoints" / "checkpoint-3.h5").string());
  const auto at6 = train::read_checkpoint_file((dir / "out" / "checkpoints" / "checkpoint-6.h5").string());
  ASSERT_TRUE(at3.tokens && at6.tokens);
  EXPECT_EQ(at6.tokens->abstractions.describe(), "TOK -> <s0><s1>");
  for (const char* half : {"clip_l", "clip_g"}) {
    const torch::Tensor a = token_rows(at3, half).weight, b = token_rows(at6, half).weight;
    const torch::Tensor ratio = b / a;
    EXPECT_GT((ratio - 1).abs().max().item<double>(), 1e-4) << half;
    EXPECT_LT((ratio - ratio.mean()).abs().max().item<double>(), 1e-5) << half;
    EXPECT_GT(token_rows(at6, half).state.at("exp_avg").abs().sum().item<double>(), 0.0) << half;
  }

  // Preempted during step 5 (after the pivot), resumed from checkpoint 3: the same bits.
  const auto [stopped, resumed] = test::preempt_and_resume(dir / "stopped.toml", 5);
  ASSERT_EQ(stopped.exit_code, 75) << stopped.err;
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(test::read_file(emb), test::read_file(dir / "out2" / "out2_emb.safetensors"));
  EXPECT_EQ(test::read_file(dir / "out" / "pytorch_lora_weights.safetensors"),
            test::read_file(dir / "out2" / "pytorch_lora_weights.safetensors"));
  // A checkpoint with embeddings does not resume a run without them, nor one with other tokens.
  const auto plain = test::run_cli({"train", (dir / "stopped.toml").string(), "--set", "checkpoint.resume=\"latest\"",
                                    "--set", "lora.train_text_encoder_ti=false", "--set", "train.max_steps=7"});
  EXPECT_EQ(plain.exit_code, 2);
  EXPECT_NE(plain.err.find("holds pivotal tuning's token embeddings (/embeddings), this run does not train any"),
            std::string::npos)
      << plain.err;
  const auto three = test::run_cli({"train", (dir / "stopped.toml").string(), "--set", "checkpoint.resume=\"latest\"",
                                    "--set", "lora.num_new_tokens_per_abstraction=3", "--set", "train.max_steps=7"});
  EXPECT_EQ(three.exit_code, 2);
  EXPECT_NE(three.err.find("/embeddings holds TOK -> <s0><s1>, the config asks for TOK -> <s0><s1><s2>"),
            std::string::npos)
      << three.err;

  // inspect names them; export writes them beside the LoRA, the same bytes as the run's file
  // but for the metadata.
  const std::string ckpt6 = (dir / "out" / "checkpoints" / "checkpoint-6.h5").string();
  const auto info = test::run_cli({"inspect", ckpt6});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("embeddings:  /embeddings: pivotal tuning of TOK -> <s0><s1>, 128 parameters"),
            std::string::npos)
      << info.out;
  const auto nudge = test::run_cli({"export", ckpt6, "--out", (dir / "lora-only.safetensors").string()});
  ASSERT_EQ(nudge.exit_code, 0) << nudge.err;
  EXPECT_NE(nudge.err.find("write them with --embeddings FILE"), std::string::npos) << nudge.err;
  const std::string exported = (dir / "exported_emb.safetensors").string();
  const auto exp = test::run_cli(
      {"export", ckpt6, "--out", (dir / "exported.safetensors").string(), "--embeddings", exported});
  ASSERT_EQ(exp.exit_code, 0) << exp.err;
  const auto ours = io::SafetensorsFile::open(emb), theirs = io::SafetensorsFile::open(exported);
  for (const char* name : {"clip_l", "clip_g"}) {
    const auto* a = ours->find(name);
    const auto* b = theirs->find(name);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(std::vector<std::uint8_t>(ours->data(*a), ours->data(*a) + (a->end - a->begin)),
              std::vector<std::uint8_t>(theirs->data(*b), theirs->data(*b) + (b->end - b->begin)));
  }
  const auto again =
      test::run_cli({"export", ckpt6, "--out", (dir / "x.safetensors").string(), "--embeddings", exported});
  EXPECT_EQ(again.exit_code, 2);
  EXPECT_NE(again.err.find("already exists"), std::string::npos) << again.err;
  // A path that cannot be written is found before anything is written.
  const auto nowhere = test::run_cli({"export", ckpt6, "--out", (dir / "y.safetensors").string(), "--embeddings",
                                      (dir / "no" / "such" / "e.safetensors").string()});
  EXPECT_EQ(nowhere.exit_code, 2);
  EXPECT_NE(nowhere.err.find("does not exist"), std::string::npos) << nowhere.err;
  EXPECT_FALSE(fs::exists(dir / "y.safetensors"));
  const auto device = test::run_cli({"export", ckpt6, "--out", "/dev/null", "--force"});
  EXPECT_EQ(device.exit_code, 2);
  EXPECT_NE(device.err.find("is not a regular file"), std::string::npos) << device.err;
  // tokenize reads TOK as the new tokens with the file.
  const auto tok = test::run_cli({"tokenize", (test::reference_dir() / "tiny-sdxl").string(), "--prompt", "a TOK cat",
                                  "--embeddings", emb});
  ASSERT_EQ(tok.exit_code, 0) << tok.err;
  EXPECT_NE(tok.out.find("tokenizer 'a TOK cat' (4 tokens): 49406 320 49408 49409 2368 49407"), std::string::npos)
      << tok.out;

  // The LoRA with its embeddings draws the last validation image; without them TOK is just text.
  const std::string lora = (dir / "out" / "pytorch_lora_weights.safetensors").string();
  const auto validation = io::read_png((dir / "out" / "samples" / "step_6" / "0-0.png").string()).rgb;
  const std::string prompt = "TOK cat on a sofa";
  const auto with =
      test::tiny_generated_pixels(dir / "with", prompt, 0, {"--lora", lora, "--embeddings", emb, "--lora-mode", "runtime"});
  EXPECT_EQ(with, validation);
  EXPECT_NE(test::tiny_generated_pixels(dir / "without", prompt, 0, {"--lora", lora, "--lora-mode", "runtime"}),
            validation);
  // The model card's base column reads the prompt as the base model does.
  EXPECT_EQ(test::tiny_generated_pixels(dir / "base", prompt, 0),
            io::read_png((dir / "out" / "samples" / "base" / "0-0.png").string()).rgb);

  // A file whose rows do not fit this model's encoders is one clear error.
  const auto bad = test::run_cli({"generate", "--model", (test::reference_dir() / "tiny-sdxl").string(), "--prompt",
                                  "x", "--out", (dir / "bad").string(), "--embeddings", lora});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("has no tensor \"clip_l\""), std::string::npos) << bad.err;
  EXPECT_FALSE(fs::exists(dir / "bad"));
}

// Two ranks: every rank's embeddings see the all-reduced gradient; the weight check, which
// covers them, runs at every logging step and ends the run if the ranks' rows ever differ.
TEST(PivotalTraining, TwoRanksKeepTheSameEmbeddings) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  test::write_file(dir / "run.toml", pivotal_run_config(dir / "out"));
  const auto r = test::run_mpirun(2, {"train", (dir / "run.toml").string(), "--set", "train.max_steps=4", "--set",
                                      "logging.every_steps=1", "--set", "validation.every_steps=4"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::exists(dir / "out" / "out_emb.safetensors"));
}

// A run whose prompts never name the abstraction, or whose share of steps rounds to none, says so.
TEST(PivotalTraining, UselessSettingsAreSaid) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  test::write_file(dir / "run.toml", pivotal_run_config(dir / "out"));
  const auto r = test::run_cli({"train", (dir / "run.toml").string(), "--set", "train.max_steps=1", "--set",
                                "data.instance_prompt=\"a photo of tok cat\"", "--set", "validation.prompts=[]"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("no instance prompt or caption contains TOK -> <s0><s1>, so the new tokens' embeddings will "
                       "not train ('a photo of tok cat' has 'TOK' in other letter case"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("lora.train_text_encoder_ti_frac = 0.5 of 1 steps leaves no step in which the new embeddings "
                       "train"),
            std::string::npos)
      << r.err;
}
