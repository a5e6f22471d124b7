// The real binary: subcommands, help, exit codes and error lines.
#include "support/process.h"
#include "support/reference.h"

#include <gtest/gtest.h>

using sdxl::test::run_cli;

TEST(Cli, HelpListsCommands) {
  auto r = run_cli({"help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* c : {"version", "check-config", "config-reference"}) EXPECT_NE(r.out.find(c), std::string::npos) << c;
  auto none = run_cli({});
  EXPECT_EQ(none.exit_code, 2);
}

TEST(Cli, UnknownCommandSuggests) {
  auto r = run_cli({"verison"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown command 'verison' (did you mean 'version'?)"), std::string::npos) << r.err;
}

TEST(Cli, Version) {
  auto r = run_cli({"version"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("sdxl-dreambooth 0."), std::string::npos);
  EXPECT_NE(r.out.find("LibTorch:"), std::string::npos);
  EXPECT_NE(r.out.find("MPI:       Open MPI"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("NCCL:"), std::string::npos);
  EXPECT_NE(r.out.find("HDF5:      1."), std::string::npos);
}

TEST(Cli, SubcommandHelp) {
  auto r = run_cli({"check-config", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("train.batch_size"), std::string::npos);
  EXPECT_NE(run_cli({"help", "check-config"}).out.find("usage: sdxl-dreambooth check-config"), std::string::npos);
}

TEST(Cli, CheckConfigPrintsResolvedTable) {
  const auto cfg = (sdxl::test::project_dir() / "configs" / "tiny.toml").string();
  auto r = run_cli({"check-config", cfg, "--set", "train.batch_size=3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("train.batch_size"), std::string::npos);
  EXPECT_NE(r.out.find("--set train.batch_size=3"), std::string::npos) << r.out;
  auto toml = run_cli({"check-config", cfg, "--toml"});
  EXPECT_NE(toml.out.find("[train]\n"), std::string::npos);
}

TEST(Cli, BadConfigIsExitTwoWithFileAndLine) {
  sdxl::test::TempDir dir;
  sdxl::test::write_file(dir / "bad.toml",
                         "[model]\npretrained = \"m\"\n[data]\ninstance_dir = \"d\"\ninstance_prompt = \"p\"\n"
                         "[train]\nbatch_size = -1\n");
  auto r = run_cli({"check-config", (dir / "bad.toml").string()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("bad.toml:7: train.batch_size: expected an integer in [1, 4096], got -1"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("hint: run 'sdxl-dreambooth config-reference'"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
  auto missing = run_cli({"check-config", (dir / "nope.toml").string()});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("cannot read config file"), std::string::npos);
  auto badopt = run_cli({"check-config", (dir / "bad.toml").string(), "--sett", "a=b"});
  EXPECT_EQ(badopt.exit_code, 2);
  EXPECT_NE(badopt.err.find("did you mean '--set'"), std::string::npos) << badopt.err;
}

TEST(Cli, ConfigReferenceMatchesDocs) {
  auto r = run_cli({"config-reference"});
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, sdxl::test::read_file(sdxl::test::project_dir() / "docs" / "config-reference.md"));
}

TEST(Cli, ModelInfoLoadsEveryComponentOfTinySdxl) {
  SDXL_REQUIRE_REFERENCE();
  const auto tiny = (sdxl::test::reference_dir() / "tiny-sdxl").string();
  auto r = run_cli({"model-info", tiny});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("unet: 10,284,676 parameters, 840 tensors"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("text_encoder_2:"), std::string::npos);
  EXPECT_NE(r.out.find("tokenizer_2: 49,408 tokens, pad id 0"), std::string::npos) << r.out;
  auto missing = run_cli({"model-info", "someorg/absent-model"}, {{"HF_HOME", "/nonexistent-hf-home"}});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("/nonexistent-hf-home/hub/models--someorg--absent-model/refs/main"), std::string::npos)
      << missing.err;
  EXPECT_NE(missing.err.find("hint:"), std::string::npos);
}

TEST(Cli, TokenizeShowsBothTokenizers) {
  SDXL_REQUIRE_REFERENCE();
  auto r = run_cli({"tokenize", (sdxl::test::reference_dir() / "tiny-sdxl").string(), "--prompt", "a photo of sks dog"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("tokenizer 'a photo of sks dog' (5 tokens): 49406 320 1125 539 48136 1929 49407 49407"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("tokenizer_2 'a photo of sks dog' (5 tokens): 49406 320 1125 539 48136 1929 49407 0 0"),
            std::string::npos)
      << r.out;
}
