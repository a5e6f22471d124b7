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
