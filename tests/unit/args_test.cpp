#include "sdxl_dreambooth/cli/args.h"
#include "sdxl_dreambooth/error.h"

#include <gtest/gtest.h>

using sdxl::cli::Args;

TEST(Args, ParsesFlagsOptionsRepeatedAndPositionals) {
  Args a({"cfg.toml", "--toml", "--set", "a.b=1", "--set=c.d=2", "--out", "x", "--", "--literal"}, {"--toml"},
         {"--out"}, {"--set"});
  EXPECT_TRUE(a.flag("--toml"));
  EXPECT_EQ(a.option("--out"), "x");
  EXPECT_EQ(a.repeated("--set"), (std::vector<std::string>{"a.b=1", "c.d=2"}));
  EXPECT_EQ(a.positionals(), (std::vector<std::string>{"cfg.toml", "--literal"}));
}

TEST(Args, UnknownOptionSuggests) {
  try {
    Args({"--ouput", "x"}, {}, {"--out", "--output"});
    FAIL();
  } catch (const sdxl::UsageError& e) {
    EXPECT_STREQ(e.what(), "unknown option '--ouput' (did you mean '--output'?)");
  }
}

TEST(Args, MissingValueAndBadNumbers) {
  EXPECT_THROW(Args({"--out"}, {}, {"--out"}), sdxl::UsageError);
  EXPECT_THROW(Args({"--out", "a", "--out", "b"}, {}, {"--out"}), sdxl::UsageError);
  Args a({"--steps", "2x", "--scale", "0.5"}, {}, {"--steps", "--scale"});
  EXPECT_THROW(a.int_option("--steps"), sdxl::UsageError);
  EXPECT_DOUBLE_EQ(*a.float_option("--scale"), 0.5);
  Args hex({"--scale", "0x10"}, {}, {"--scale"});
  EXPECT_THROW(hex.float_option("--scale"), sdxl::UsageError);  // strtod would read 16
}

// An option's value is never the next option, and a short option is no positional argument.
TEST(Args, OptionsAreNotValuesNorPositionals) {
  const auto message = [](const std::vector<std::string>& argv) {
    try {
      Args(argv, {"--force"}, {"--prompt", "--out", "--seed"});
    } catch (const sdxl::UsageError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(message({"--prompt", "--out", "y"}),
            "option --prompt needs a value, got the option '--out' (write --prompt=VALUE for a value that starts with --)");
  EXPECT_EQ(message({"cfg.toml", "-s", "x"}), "unknown option '-s' (options are long: --name)");
  EXPECT_EQ(message({"--prompt=--out", "--seed", "-5", "-", "-0.5"}), "");
  Args a({"--prompt=--out", "--seed", "-5"}, {}, {"--prompt", "--seed"});
  EXPECT_EQ(*a.option("--prompt"), "--out");
  EXPECT_EQ(*a.int_option("--seed"), -5);
}
