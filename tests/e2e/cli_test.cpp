// The real binary: subcommands, help, exit codes and error lines.
#include "sdxl_dreambooth/io/png_writer.h"
#include "support/process.h"
#include "support/reference.h"

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>

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
  // scripts/install-deps.sh installs it; the line also names the library's file.
  EXPECT_NE(r.out.find("BLAS:      OpenBLAS "), std::string::npos) << r.out;
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
  // A config that is no file: a FIFO without a writer blocked, /dev/zero was read without end.
  ASSERT_EQ(::mkfifo((dir / "fifo.toml").c_str(), 0644), 0);
  for (const std::string& path : {(dir / "fifo.toml").string(), std::string("/dev/zero")}) {
    for (const char* command : {"check-config", "train"}) {
      const auto r = run_cli({command, path});
      EXPECT_EQ(r.exit_code, 2) << command << " " << path;
      EXPECT_NE(r.err.find("' is " + std::string(path == "/dev/zero" ? "a device" : "a FIFO (named pipe)") +
                           ", not a regular file"),
                std::string::npos)
          << r.err;
    }
  }
}

// File names that are not UTF-8 (Latin-1 from an old archive): they train, and JSON output
// (inspect --json, the LoRA's metadata) stays valid, instead of "internal failure".
TEST(Cli, FileNamesThatAreNotUtf8TrainAndInspect) {
  SDXL_REQUIRE_REFERENCE();
  namespace fs = std::filesystem;
  sdxl::test::TempDir dir;
  fs::create_directories(dir / "images");
  fs::copy_file(sdxl::test::subjects_dir() / "chelsea" / "01.jpg", dir / "images" / "\xe9t\xe9.jpg");
  fs::copy_file(sdxl::test::subjects_dir() / "chelsea" / "02.png", dir / "images" / "b.png");
  sdxl::test::write_file(dir / "run.toml", "[model]\npretrained = \"" +
                                              (sdxl::test::reference_dir() / "tiny-sdxl").string() +
                                              "\"\n[data]\ninstance_dir = \"" + (dir / "images").string() +
                                              "\"\ninstance_prompt = \"sks cat\"\nresolution = 64\n"
                                              "[train]\nmax_steps = 1\nbatch_size = 1\n[output]\ndir = \"" +
                                              (dir / "out").string() + "\"\n");
  const auto trained = run_cli({"train", (dir / "run.toml").string()});
  ASSERT_EQ(trained.exit_code, 0) << trained.err;
  EXPECT_NE(trained.err.find("2 images listed"), std::string::npos) << trained.err;
  fs::copy_file(dir / "out" / "checkpoints" / "checkpoint-1.h5", dir / "c\xe9.h5");
  const auto inspected = run_cli({"inspect", (dir / "c\xe9.h5").string(), "--json"});
  EXPECT_EQ(inspected.exit_code, 0) << inspected.err;
  EXPECT_NE(inspected.out.find("\"format_version\": 2"), std::string::npos) << inspected.out;
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
  EXPECT_NE(r.out.find("scheduler: EulerDiscreteScheduler, 1000 training timesteps"), std::string::npos) << r.out;
  // Every component is checked, the scheduler's config included.
  sdxl::test::TempDir dir;
  for (const auto& entry : std::filesystem::directory_iterator(tiny)) {
    if (entry.path().filename() != "scheduler") {
      std::filesystem::create_symlink(entry.path(), dir / entry.path().filename().string());
    }
  }
  std::filesystem::create_directories(dir / "scheduler");
  auto no_scheduler = run_cli({"model-info", dir.path().string()});
  EXPECT_NE(no_scheduler.exit_code, 0);
  EXPECT_NE(no_scheduler.err.find("scheduler_config.json"), std::string::npos) << no_scheduler.err;
}

// Pipeline files that are wrong for SDXL as a whole: one error naming the file, never
// LibTorch's or the JSON library's own message, and no endless read of a FIFO.
TEST(Cli, ModelInfoRefusesPipelinesThatDoNotHangTogether) {
  SDXL_REQUIRE_REFERENCE();
  namespace fs = std::filesystem;
  const fs::path tiny = sdxl::test::reference_dir() / "tiny-sdxl";
  sdxl::test::TempDir dir;
  // A copy of the pipeline whose `file` is `content` (the rest linked).
  const auto variant = [&](const std::string& name, const std::string& file, const std::string& content) {
    const fs::path root = dir / name;
    fs::create_directories(root);
    for (const auto& entry : fs::directory_iterator(tiny)) {
      const std::string component = entry.path().filename().string();
      if (file.rfind(component, 0) != 0) {
        fs::create_symlink(entry.path(), root / component);
        continue;
      }
      fs::copy(entry.path(), root / component, fs::copy_options::recursive);
    }
    if (content == "<fifo>") {
      fs::remove(root / file);
      EXPECT_EQ(::mkfifo((root / file).c_str(), 0644), 0);
    } else {
      sdxl::test::write_file(root / file, content);
    }
    return root.string();
  };
  auto tokenizer_config = sdxl::test::read_file(tiny / "tokenizer" / "tokenizer_config.json");
  const auto at = tokenizer_config.find("\"model_max_length\": 77");
  ASSERT_NE(at, std::string::npos);
  tokenizer_config.replace(at, std::string("\"model_max_length\": 77").size(), "\"model_max_length\": 5");
  for (const auto& [root, message] : std::vector<std::pair<std::string, std::string>>{
           {variant("short", "tokenizer/tokenizer_config.json", tokenizer_config),
            "model_max_length 77 differs from the 5 of"},
           {variant("array", "model_index.json", "[]\n"), "model_index.json': expected a JSON object"},
           {variant("number", "model_index.json", "{\"_class_name\": 5}\n"), "_class_name is not a string"},
           {variant("fifo", "tokenizer/vocab.json", "<fifo>"), "vocab.json' is a FIFO (named pipe), not a regular file"}}) {
    const auto r = run_cli({"model-info", root});
    EXPECT_EQ(r.exit_code, 1) << root;
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("internal failure"), std::string::npos) << r.err;
  }
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

namespace {

std::vector<std::string> generate_args(const std::string& out, const std::string& seed) {
  return {"generate", "--model", (sdxl::test::reference_dir() / "tiny-sdxl").string(), "--prompt", "sks cat on a sofa",
          "--size", "64x48", "--steps", "3", "--num-images", "2", "--seed", seed, "--out", out};
}

// The largest difference of one channel between two PNGs of the same size, in 1/255 steps.
int max_channel_difference(const std::filesystem::path& a_path, const std::filesystem::path& b_path) {
  const auto a = sdxl::io::read_png(a_path.string());
  const auto b = sdxl::io::read_png(b_path.string());
  EXPECT_EQ(a.rgb.size(), b.rgb.size()) << a_path << " " << b_path;
  if (a.rgb.size() != b.rgb.size()) return 255;
  int worst = 0;
  for (std::size_t i = 0; i < a.rgb.size(); ++i) worst = std::max(worst, std::abs(int{a.rgb[i]} - int{b.rgb[i]}));
  return worst;
}

}  // namespace

TEST(Cli, GenerateIsReproducibleAndSeedDependent) {
  SDXL_REQUIRE_REFERENCE();
  sdxl::test::TempDir dir;
  auto a = run_cli(generate_args((dir / "a").string(), "7"));
  ASSERT_EQ(a.exit_code, 0) << a.err;
  auto b = run_cli(generate_args((dir / "b").string(), "7"));
  ASSERT_EQ(b.exit_code, 0) << b.err;
  auto c = run_cli(generate_args((dir / "c").string(), "8"));
  ASSERT_EQ(c.exit_code, 0) << c.err;
  const auto img = [&](const char* sub, const char* name) { return sdxl::test::read_file(dir / sub / name); };
  ASSERT_FALSE(img("a", "0-0-seed7.png").empty());
  EXPECT_EQ(img("a", "0-0-seed7.png"), img("b", "0-0-seed7.png"));  // byte-identical
  // Image k uses seed + k. Here it sits at another position of the UNet batch, which an
  // optimized BLAS (OpenBLAS, like a GPU) may round differently: equal up to rounding, as
  // docs/generation.md says of batches.
  EXPECT_LE(max_channel_difference(dir / "a" / "0-1-seed8.png", dir / "c" / "0-0-seed8.png"), 2);
  EXPECT_GT(max_channel_difference(dir / "a" / "0-0-seed7.png", dir / "a" / "0-1-seed8.png"), 20);
  const auto png = sdxl::io::read_png((dir / "a" / "0-0-seed7.png").string());
  EXPECT_EQ(png.width, 64);
  EXPECT_EQ(png.height, 48);
  bool has_prompt = false;
  for (const auto& [k, v] : png.text) has_prompt |= k == "prompt" && v == "sks cat on a sofa";
  EXPECT_TRUE(has_prompt);
  // A rerun into the same folder replaces its own images, and says so.
  EXPECT_EQ(a.err.find("replacing"), std::string::npos) << a.err;
  auto again = run_cli(generate_args((dir / "a").string(), "7"));
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.err.find("warning: replacing '" + (dir / "a" / "0-0-seed7.png").string() + "'"), std::string::npos)
      << again.err;
}

// Several images per UNet call: the same pictures as one at a time up to rounding, whatever
// batch an image lands in; auto sizes the batch from --memory-budget.
TEST(Cli, GenerateBatchesImagesWithinTheMemoryBudget) {
  SDXL_REQUIRE_REFERENCE();
  sdxl::test::TempDir dir;
  const std::string tiny = (sdxl::test::reference_dir() / "tiny-sdxl").string();
  auto args = [&](const std::string& out, std::vector<std::string> extra) {
    std::vector<std::string> a{"generate", "--model", tiny, "--prompt", "sks cat", "--prompt", "a dog on grass",
                               "--num-images", "2", "--size", "64x64", "--steps", "3", "--out", (dir / out).string()};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  const auto one = run_cli(args("one", {"--batch-size", "1"}));
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_NE(one.err.find("batches of 1 image(s): 4 UNet batch(es)"), std::string::npos) << one.err;
  const auto three = run_cli(args("three", {"--batch-size", "3"}));
  ASSERT_EQ(three.exit_code, 0) << three.err;
  const auto all = run_cli(args("auto", {}));  // the default 8 GiB takes all four at once
  ASSERT_EQ(all.exit_code, 0) << all.err;
  EXPECT_NE(all.err.find("batches of 4 image(s): 1 UNet batch(es)"), std::string::npos) << all.err;
  for (const char* name : {"0-0-seed0.png", "0-1-seed1.png", "1-0-seed2.png", "1-1-seed3.png"}) {
    for (const char* batched : {"three", "auto"}) {
      EXPECT_LE(max_channel_difference(dir / "one" / name, dir / batched / name), 2)
          << batched << "/" << name << " differs from the unbatched image by more than rounding";
    }
  }
  // A budget below one image's estimate: one at a time, with a warning.
  const auto tight = run_cli(args("tight", {"--memory-budget", "0.0001"}));
  ASSERT_EQ(tight.exit_code, 0) << tight.err;
  EXPECT_NE(tight.err.find("batches of 1 image(s)"), std::string::npos) << tight.err;
  EXPECT_NE(tight.err.find("warning: one image needs more than --memory-budget"), std::string::npos) << tight.err;
  const auto forced = run_cli(args("forced", {"--memory-budget", "0.0001", "--batch-size", "2"}));
  ASSERT_EQ(forced.exit_code, 0) << forced.err;
  EXPECT_NE(forced.err.find("batches of 2 image(s): 2 UNet batch(es)"), std::string::npos) << forced.err;
  EXPECT_NE(forced.err.find("warning: --batch-size 2 is estimated over --memory-budget"), std::string::npos)
      << forced.err;
  for (const auto& bad : {std::vector<std::string>{"--batch-size", "0"}, {"--batch-size", "many"},
                          {"--memory-budget", "0"}, {"--memory-budget", "-1"}}) {
    const auto r = run_cli(args("bad", bad));
    EXPECT_EQ(r.exit_code, 2) << bad[0] << " " << bad[1];
    EXPECT_NE(r.err.find(bad[0]), std::string::npos) << r.err;
  }
}

TEST(Cli, GenerateBadInput) {
  SDXL_REQUIRE_REFERENCE();
  sdxl::test::TempDir dir;
  const auto tiny = (sdxl::test::reference_dir() / "tiny-sdxl").string();
  const auto out = (dir / "out").string();
  auto size = run_cli({"generate", "--model", tiny, "--prompt", "x", "--size", "60x64", "--out", out});
  EXPECT_EQ(size.exit_code, 2);
  EXPECT_NE(size.err.find("image size 60x64: width and height must be positive multiples of 8"), std::string::npos);
  auto steps = run_cli({"generate", "--model", tiny, "--prompt", "x", "--steps", "0", "--out", out});
  EXPECT_EQ(steps.exit_code, 2);
  EXPECT_NE(steps.err.find("steps must be at least 1, got 0"), std::string::npos) << steps.err;
  auto sched = run_cli({"generate", "--model", tiny, "--prompt", "x", "--scheduler", "ddim", "--out", out});
  EXPECT_EQ(sched.exit_code, 2);
  EXPECT_NE(sched.err.find("unknown scheduler 'ddim': expected dpmpp2m, euler or euler_karras"), std::string::npos);
  // Values that would exhaust memory, draw black pictures or fail deep inside LibTorch, refused
  // by option name before anything loads.
  for (const auto& [args, message] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--num-images", "99999999999"}, "--num-images: expected a whole number from 1 to 10000"},
           {{"--guidance", "inf"}, "--guidance: expected a number from 0 to 1000, got inf"},
           {{"--guidance", "1e30"}, "--guidance: expected a number from 0 to 1000"},
           {{"--negative", "\xc3"}, "--negative '\\xc3': not valid UTF-8 text"},
           {{"--dtype", "fp16"}, "--dtype fp16 needs --device cuda"}}) {
    std::vector<std::string> argv{"generate", "--model", tiny, "--prompt", "x", "--out", out};
    argv.insert(argv.end(), args.begin(), args.end());
    const auto bad = run_cli(argv);
    EXPECT_EQ(bad.exit_code, 2) << args[0];
    EXPECT_NE(bad.err.find(message), std::string::npos) << bad.err;
  }
  auto model = run_cli({"generate", "--model", (dir / "none").string(), "--prompt", "x", "--out", out});
  EXPECT_EQ(model.exit_code, 2);  // what the command line names is a usage error, as in train
  EXPECT_NE(model.err.find("--model: model '" + (dir / "none").string() + "' not found; looked in"), std::string::npos)
      << model.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "out"));  // nothing written
}

// The built-in tiny pipeline needs no reference data: it loads strictly, tokenizes any text
// byte by byte, trains, and refuses to overwrite itself.
TEST(Cli, InitTinyWritesAPipelineThatLoadsTrainsAndGenerates) {
  sdxl::test::TempDir dir;
  const std::string model = (dir / "tiny").string();
  const auto init = run_cli({"init-tiny", "--out", model, "--seed", "7"});
  ASSERT_EQ(init.exit_code, 0) << init.err;
  const auto info = run_cli({"model-info", model});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("unet:"), std::string::npos) << info.out;
  const auto tok = run_cli({"tokenize", model, "--prompt", "sks ü"});
  ASSERT_EQ(tok.exit_code, 0) << tok.err;
  // <|startoftext|> = 512, "s" "k" "s</w>" (byte symbols, then the end-of-word form), "ü" as its
  // two UTF-8 bytes, <|endoftext|> = 513; tokenizer_2 pads with "!" = 0.
  EXPECT_NE(tok.out.find("tokenizer 'sks \u00fc' (5 tokens): 512 82 74 338 127 376 513 513"), std::string::npos)
      << tok.out;
  EXPECT_NE(tok.out.find("tokenizer_2 'sks \u00fc' (5 tokens): 512 82 74 338 127 376 513 0 0"), std::string::npos)
      << tok.out;
  const auto again = run_cli({"init-tiny", "--out", model});
  EXPECT_EQ(again.exit_code, 2);
  EXPECT_NE(again.err.find("already holds a pipeline"), std::string::npos) << again.err;
  sdxl::test::write_file(dir / "a-file", "x");
  const auto onto_file = run_cli({"init-tiny", "--out", (dir / "a-file").string()});
  EXPECT_EQ(onto_file.exit_code, 2);
  EXPECT_NE(onto_file.err.find("is a file, not a folder"), std::string::npos) << onto_file.err;

  sdxl::test::write_file(dir / "run.toml",
                         "[model]\npretrained = \"" + model + "\"\n[data]\ninstance_dir = \"" + SDXL_SOURCE_DIR +
                             "/examples/subject-cat\"\ninstance_prompt = \"a photo of sks cat\"\nresolution = 64\n"
                             "[train]\nmax_steps = 2\nseed = 0\n[output]\ndir = \"" + (dir / "out").string() + "\"\n");
  const auto train = run_cli({"train", (dir / "run.toml").string()});
  ASSERT_EQ(train.exit_code, 0) << train.err;
  EXPECT_NE(train.err.find("data.instance_dir: 5 images"), std::string::npos) << train.err;
  const auto gen = run_cli({"generate", "--model", model, "--prompt", "sks cat", "--size", "64x64", "--steps", "2",
                            "--out", (dir / "gen").string(), "--lora",
                            (dir / "out" / "pytorch_lora_weights.safetensors").string()});
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
}

// What jobs/train.sbatch reads to tell a launch that never started the program from a run
// (cli/status_file.h): the command, then its exit code; other ranks write nothing.
TEST(Cli, StatusFileReportsTheCommandAndItsExitCode) {
  sdxl::test::TempDir dir;
  const auto status = (dir / "job.status").string();
  const auto cfg = (sdxl::test::project_dir() / "configs" / "tiny.toml").string();
  auto ok = run_cli({"check-config", cfg}, {{"SDXL_STATUS_FILE", status}});
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(sdxl::test::read_file(status), "exit 0\n");
  auto bad = run_cli({"check-config", cfg, "--set", "train.batch_size=-1"}, {{"SDXL_STATUS_FILE", status}});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_EQ(sdxl::test::read_file(status), "exit 2\n");
  std::filesystem::remove(status);
  auto other = run_cli({"check-config", cfg}, {{"SDXL_STATUS_FILE", status}, {"PMIX_RANK", "1"}});
  EXPECT_EQ(other.exit_code, 0) << other.err;
  EXPECT_FALSE(std::filesystem::exists(status));
  auto unwritable = run_cli({"check-config", cfg}, {{"SDXL_STATUS_FILE", (dir / "no" / "s").string()}});
  EXPECT_EQ(unwritable.exit_code, 1);
  EXPECT_NE(unwritable.err.find((dir / "no" / "s").string()), std::string::npos) << unwritable.err;
}

// Output that cannot be written fails the command; a failed allocation is one line with what to
// lower, without LibTorch's stack of "frame #N" lines or "this is a bug".
TEST(Cli, UnwritableOutputAndOutOfMemoryAreOneClearLine) {
  const auto full = sdxl::test::run_process({"bash", "-c", std::string(SDXL_BINARY) + " version > /dev/full"});
  EXPECT_EQ(full.exit_code, 1);
  EXPECT_NE(full.err.find("error: writing to the standard output failed: No space left on device"), std::string::npos)
      << full.err;
  SDXL_REQUIRE_REFERENCE();
  sdxl::test::TempDir dir;
  const auto tiny = (sdxl::test::reference_dir() / "tiny-sdxl").string();
  // 4096x4096 decodes through ~21 GiB of activations; 6 GB of address space cannot hold them.
  const auto oom = sdxl::test::run_process(
      {"bash", "-c", "ulimit -v 6000000; exec " + std::string(SDXL_BINARY) + " generate --model " + tiny +
                         " --prompt x --steps 1 --size 4096x4096 --out " + (dir / "out").string()});
  EXPECT_EQ(oom.exit_code, 1) << oom.err;
  EXPECT_NE(oom.err.find("error: out of memory in generate: "), std::string::npos) << oom.err;
  EXPECT_EQ(oom.err.find("frame #"), std::string::npos) << oom.err;
  EXPECT_EQ(oom.err.find("this is a bug"), std::string::npos) << oom.err;
}
