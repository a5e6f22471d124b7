// `sdxl-dreambooth train` end to end on the tiny pipeline: the loss goes down, the run is
// reproducible, the outputs load, and bad data gives one clear error.
#include "sdxl_dreambooth/data/image_decoder.h"
#include "sdxl_dreambooth/io/safetensors.h"
#include "support/process.h"
#include "support/reference.h"

#include <gtest/gtest.h>

#include <cmath>

#include <fstream>
#include <numeric>
#include <sstream>

using namespace sdxl;
namespace fs = std::filesystem;

namespace {

std::string q(const fs::path& p) { return "\"" + p.string() + "\""; }

// A tiny-pipeline config with absolute paths; `extra` is appended (later keys win per table).
std::string tiny_config(const fs::path& out, const fs::path& instance_dir, const std::string& train_extra = "",
                        const std::string& more = "") {
  std::ostringstream s;
  s << "[model]\npretrained = " << q(test::reference_dir() / "tiny-sdxl") << "\n"
    << "[data]\ninstance_dir = " << q(instance_dir) << "\ninstance_prompt = \"a photo of sks cat\"\n"
    << "resolution = 64\ncenter_crop = true\n"
    << "[train]\nseed = 0\n" << train_extra << "\n"
    << "[output]\ndir = " << q(out) << "\n"
    << "[logging]\nevery_steps = 5\n"
    << more;
  return s.str();
}

std::vector<double> read_losses(const fs::path& csv) {
  std::ifstream in(csv);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "step,loss,lr,grad_norm,step_seconds");
  std::vector<double> losses;
  while (std::getline(in, line)) losses.push_back(std::stod(line.substr(line.find(',') + 1)));
  return losses;
}

}  // namespace

TEST(Train, SixtyStepsOnChelseaLowerTheLoss) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  test::write_file(dir / "run.toml",
                   tiny_config(dir / "out", test::subjects_dir() / "chelsea",
                               "batch_size = 4\nmax_steps = 60\nlearning_rate = 1e-2\n",
                               "[validation]\nprompts = [\"sks cat on a sofa\"]\nevery_steps = 30\nnum_images = 1\n"
                               "steps = 3\n"));
  const auto r = test::run_cli({"train", (dir / "run.toml").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("step 60/60"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("img/s"), std::string::npos);
  EXPECT_NE(r.err.find("peak memory"), std::string::npos);

  const auto losses = read_losses(dir / "out" / "metrics.csv");
  ASSERT_EQ(losses.size(), 60u);
  const double first = std::accumulate(losses.begin(), losses.begin() + 10, 0.0) / 10;
  const double last = std::accumulate(losses.end() - 10, losses.end(), 0.0) / 10;
  // The tiny pipeline's random weights start above the loss of predicting zero (1.0) and the
  // adapters bring it down to about that (measured: 1.08 -> 0.99); seeded, so deterministic.
  EXPECT_LT(last, 0.95 * first) << "first 10 steps: " << first << ", last 10: " << last;

  // The diffusers-format LoRA: every adapter of the UNet, trained (up weights non-zero).
  const auto lora = io::SafetensorsFile::open((dir / "out" / "pytorch_lora_weights.safetensors").string());
  EXPECT_EQ(lora->tensors().size(), 448u);
  const auto* up = lora->find("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.lora.up.weight");
  ASSERT_NE(up, nullptr);
  EXPECT_EQ(up->shape[1], 4);
  EXPECT_NE(lora->find("unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0.lora.down.weight"), nullptr);
  EXPECT_EQ(lora->metadata().at("rank"), "4");
  EXPECT_TRUE(fs::exists(dir / "out" / "samples" / "step_30" / "0-0.png"));
  EXPECT_TRUE(fs::exists(dir / "out" / "samples" / "step_60" / "0-0.png"));
  EXPECT_TRUE(fs::exists(dir / "out" / "train_config.toml"));
}

TEST(Train, SameSeedGivesTheSameLora) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  const std::string extra = "batch_size = 2\nmax_steps = 4\n";
  test::write_file(dir / "a.toml", tiny_config(dir / "a", test::subjects_dir() / "chelsea", extra));
  test::write_file(dir / "b.toml", tiny_config(dir / "b", test::subjects_dir() / "chelsea", extra));
  test::write_file(dir / "c.toml", tiny_config(dir / "c", test::subjects_dir() / "chelsea", extra));
  ASSERT_EQ(test::run_cli({"train", (dir / "a.toml").string()}).exit_code, 0);
  ASSERT_EQ(test::run_cli({"train", (dir / "b.toml").string()}).exit_code, 0);
  const auto c = test::run_cli({"train", (dir / "c.toml").string(), "--set", "train.seed=1"});
  ASSERT_EQ(c.exit_code, 0) << c.err;
  const auto bytes = [&](const char* run) {
    return test::read_file(dir / run / "pytorch_lora_weights.safetensors");
  };
  EXPECT_EQ(bytes("a"), bytes("b"));
  EXPECT_NE(bytes("a"), bytes("c"));
}

TEST(Train, BadImagesFailNamingTheFileOrAreSkipped) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  test::write_file(dir / "run.toml", tiny_config(dir / "out", test::subjects_dir() / "bad", "max_steps = 2\nbatch_size = 1\n"));
  const auto strict = test::run_cli({"train", (dir / "run.toml").string()});
  EXPECT_EQ(strict.exit_code, 1);
  EXPECT_NE(strict.err.find("empty.jpg: file is empty"), std::string::npos) << strict.err;
  EXPECT_NE(strict.err.find("skip_bad_images"), std::string::npos) << strict.err;
  EXPECT_FALSE(fs::exists(dir / "out" / "pytorch_lora_weights.safetensors"));

  const auto skip = test::run_cli({"train", (dir / "run.toml").string(), "--set", "data.skip_bad_images=true"});
  ASSERT_EQ(skip.exit_code, 0) << skip.err;
  EXPECT_NE(skip.err.find("6 images (3 skipped)"), std::string::npos) << skip.err;
  EXPECT_NE(skip.err.find("truncated.jpg"), std::string::npos);
  EXPECT_NE(skip.err.find("one_pixel.png is 1x1"), std::string::npos);
}

// The step never waits for the device (train_step.h), so a diverged step is found where the
// loop reads its window back: the run must still end there, naming the step, before a LoRA,
// checkpoint or validation image is written from the broken weights.
TEST(Train, ADivergedRunEndsNamingTheStepAndWritesNoLora) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  // An absurd learning rate: the first AdamW step moves the adapters by ~1e30, the next
  // forward overflows.
  test::write_file(dir / "run.toml",
                   tiny_config(dir / "out", test::subjects_dir() / "chelsea",
                               "batch_size = 1\nmax_steps = 4\nlearning_rate = 1e30\n",
                               "[checkpoint]\nevery_steps = 3\n"));
  const auto r = test::run_cli({"train", (dir / "run.toml").string()});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("training diverged at step 2: loss"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(not finite); the LoRA was not written"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "out" / "pytorch_lora_weights.safetensors"));
  for (const auto& e : fs::recursive_directory_iterator(dir / "out")) {
    EXPECT_NE(e.path().extension(), ".h5") << "a checkpoint of diverged weights: " << e.path();
  }
  // The finite step before it is on record.
  EXPECT_EQ(read_losses(dir / "out" / "metrics.csv").size(), 1u);
}

TEST(Train, EmptyOrMissingInstanceFolderIsAUsageError) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  fs::create_directories(dir / "empty");
  test::write_file(dir / "empty" / "notes.txt", "not an image");
  test::write_file(dir / "run.toml", tiny_config(dir / "out", dir / "empty", "max_steps = 1\n"));
  const auto r = test::run_cli({"train", (dir / "run.toml").string()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("data.instance_dir: no JPEG, PNG or WebP image in"), std::string::npos) << r.err;
  const auto m = test::run_cli(
      {"train", (dir / "run.toml").string(), "--set", "data.instance_dir=\"" + (dir / "nope").string() + "\""});
  EXPECT_EQ(m.exit_code, 2);
  EXPECT_NE(m.err.find("does not exist"), std::string::npos) << m.err;
}

TEST(Train, PriorPreservationGeneratesMissingClassImages) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  test::write_file(dir / "run.toml",
                   tiny_config(dir / "out", test::subjects_dir() / "chelsea",
                               "max_steps = 3\nbatch_size = 1\nsnr_gamma = 5.0\n",
                               "[prior]\nenabled = true\nsample_steps = 2\n"));
  const auto r = test::run_cli({"train", (dir / "run.toml").string(), "--set",
                                "data.class_dir=\"" + (dir / "class").string() + "\"", "--set",
                                "data.class_prompt=\"a photo of a cat\"", "--set", "data.num_class_images=2", "--set",
                                "prior.generation_precision=\"bf16\""});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // prior.generation_precision other than the training precision: drawn by a bf16 copy.
  EXPECT_NE(r.err.find("loading the base model in BFloat16 to draw them"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::exists(dir / "class" / "class-00000.png"));
  EXPECT_TRUE(fs::exists(dir / "class" / "class-00001.png"));
  EXPECT_NE(r.err.find("data.class_dir: 2 images"), std::string::npos) << r.err;
  // As diffusers' dataset: num_class_images of a fuller folder, not all of it.
  const auto fewer = test::run_cli({"train", (dir / "run.toml").string(), "--set",
                                    "data.class_dir=\"" + (dir / "class").string() + "\"", "--set",
                                    "data.class_prompt=\"a photo of a cat\"", "--set", "data.num_class_images=1", "--set",
                                    "output.dir=\"" + (dir / "fewer").string() + "\""});
  EXPECT_EQ(fewer.exit_code, 0) << fewer.err;
  EXPECT_NE(fewer.err.find("data.class_dir: 1 images"), std::string::npos) << fewer.err;
  EXPECT_EQ(read_losses(dir / "out" / "metrics.csv").size(), 3u);
  const auto fp16 = test::run_cli(
      {"train", (dir / "run.toml").string(), "--set", "data.class_dir=\"" + (dir / "class").string() + "\"", "--set",
       "data.class_prompt=\"a photo of a cat\"", "--set", "prior.generation_precision=\"fp16\"", "--set",
       "output.dir=\"" + (dir / "out2").string() + "\""});
  EXPECT_EQ(fp16.exit_code, 2);
  EXPECT_NE(fp16.err.find("prior.generation_precision = \"fp16\" needs a CUDA device"), std::string::npos)
      << fp16.err;
}

TEST(Train, Bf16RunsOnCpuAndFp16NeedsCuda) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  test::write_file(dir / "run.toml", tiny_config(dir / "out", test::subjects_dir() / "chelsea",
                                                 "max_steps = 2\nbatch_size = 2\nmixed_precision = \"bf16\"\n"
                                                 "gradient_checkpointing = true\n"));
  const auto r = test::run_cli({"train", (dir / "run.toml").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("precision bf16"), std::string::npos) << r.err;
  const auto lora = io::SafetensorsFile::open((dir / "out" / "pytorch_lora_weights.safetensors").string());
  EXPECT_EQ(lora->tensors().at(0).dtype, io::DType::kF32);  // adapters stay float32

  const auto fp16 = test::run_cli({"train", (dir / "run.toml").string(), "--set", "train.mixed_precision=\"fp16\"",
                                   "--set", "train.device=\"cpu\""});
  EXPECT_EQ(fp16.exit_code, 2);
  EXPECT_NE(fp16.err.find("needs a CUDA device"), std::string::npos) << fp16.err;

  // A recorded step cannot serve text-encoder training: refused before anything is loaded.
  const auto graphs = test::run_cli({"train", (dir / "run.toml").string(), "--set", "train.cuda_graphs=true", "--set",
                                     "lora.train_text_encoder=true", "--set", "output.dir=\"" +
                                     (dir / "graphs").string() + "\""});
  EXPECT_EQ(graphs.exit_code, 2);
  EXPECT_NE(graphs.err.find("train.cuda_graphs = true does not work with lora.train_text_encoder = true"),
            std::string::npos)
      << graphs.err;
  EXPECT_FALSE(fs::exists(dir / "graphs"));
}

// output.kohya (on by default) and output.name: the kohya file is named after the run, or
// not written; a name that is not a file name is a configuration error.
TEST(Train, TheKohyaLoraIsNamedAfterTheRunOrLeftOut) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  test::write_file(dir / "run.toml", tiny_config(dir / "out", test::subjects_dir() / "chelsea", "max_steps = 1\n"));
  const auto named = test::run_cli({"train", (dir / "run.toml").string(), "--set", "output.name=\"sks cat v1\""});
  ASSERT_EQ(named.exit_code, 0) << named.err;
  EXPECT_TRUE(fs::exists(dir / "out" / "sks cat v1.safetensors"));
  EXPECT_FALSE(fs::exists(dir / "out" / "out.safetensors"));
  const auto off = test::run_cli({"train", (dir / "run.toml").string(), "--set", "output.kohya=false", "--set",
                                  "output.dir=\"" + (dir / "plain").string() + "\""});
  ASSERT_EQ(off.exit_code, 0) << off.err;
  EXPECT_TRUE(fs::exists(dir / "plain" / "pytorch_lora_weights.safetensors"));
  EXPECT_FALSE(fs::exists(dir / "plain" / "plain.safetensors"));
  for (const std::string bad : {"a/b", "", "pytorch_lora_weights"}) {
    const auto r = test::run_cli({"train", (dir / "run.toml").string(), "--set", "output.name=\"" + bad + "\""});
    EXPECT_EQ(r.exit_code, 2) << bad << "\n" << r.err;
    EXPECT_NE(r.err.find("output.name: expected a file name without folders"), std::string::npos) << r.err;
  }
}

// output.dir/README.md is a model card the Hugging Face hub reads: front matter with the base
// model, trigger prompt (quoted for YAML), license, tags and the validation images beside it.
TEST(Train, TheModelCardDescribesTheRunForTheHub) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  test::write_file(dir / "run.toml",
                   tiny_config(dir / "out", test::subjects_dir() / "chelsea", "max_steps = 2\n",
                               "[checkpoint]\nevery_steps = 2\n[validation]\nprompts = [\"sks's cat on a sofa\"]\n"
                               "num_images = 1\nsteps = 2\nresolution = 64\nevery_steps = 1\n"));
  const auto r = test::run_cli({"train", (dir / "run.toml").string(), "--set", "output.license=\"mit\""});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string card = test::read_file(dir / "out" / "README.md");
  for (const std::string& line : std::vector<std::string>{"---\ntags:\n- stable-diffusion-xl\n", "- template:sd-lora\n", "widget:\n- text: 'sks''s cat on a sofa'\n",
        "    url: image_0.png\n", "base_model: '" + (test::reference_dir() / "tiny-sdxl").string() + "'\n",
        "instance_prompt: 'a photo of sks cat'\n", "license: mit\n---\n", "# SDXL LoRA DreamBooth - out\n",
        "weight_name='pytorch_lora_weights.safetensors'", "<lora:out:1>", "| steps | 2 of 2 |"}) {
    EXPECT_NE(card.find(line), std::string::npos) << line << "\n" << card;
  }
  EXPECT_TRUE(fs::exists(dir / "out" / "image_0.png"));
  EXPECT_FALSE(fs::exists(dir / "out" / "README.md.tmp"));
  // samples/progress.png: a row per validation (steps 1 and 2), one column, labelled in its text.
  const fs::path progress = dir / "out" / "samples" / "progress.png";
  ASSERT_TRUE(fs::exists(progress));
  const auto grid = data::decode_image_file(progress.string()).image;
  EXPECT_EQ(grid.width, 64 + 2 * 8);
  EXPECT_GE(grid.height, 2 * 64 + 3 * 8);
  const std::string png = test::read_file(progress);
  for (const char* label : {"row 0", "step 1", "row 1", "step 2", "sks's cat on a sofa #0"}) {
    EXPECT_NE(png.find(label), std::string::npos) << label;  // iTXt chunks, uncompressed
  }
  // The last validation drew the base model too: compare.png (base | fine-tuned) in the card,
  // and samples/base/0-0.png is what `generate` draws without a LoRA for that prompt and seed.
  EXPECT_NE(card.find("## Base model vs fine-tuned\n"), std::string::npos) << card;
  EXPECT_NE(card.find("![base model vs fine-tuned](compare.png)"), std::string::npos) << card;
  const auto compare = data::decode_image_file((dir / "out" / "compare.png").string()).image;
  EXPECT_EQ(compare.width, 2 * 64 + 3 * 8);
  const auto plain = test::run_cli({"generate", "--model", (test::reference_dir() / "tiny-sdxl").string(), "--prompt",
                                    "sks's cat on a sofa", "--steps", "2", "--size", "64x64", "--seed",
                                    "0", "--out", (dir / "plain").string()});
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  std::vector<fs::path> drawn;
  for (const auto& e : fs::directory_iterator(dir / "plain")) {
    if (e.path().extension() == ".png") drawn.push_back(e.path());
  }
  ASSERT_EQ(drawn.size(), 1u);
  EXPECT_EQ(data::decode_image_file((dir / "out" / "samples" / "base" / "0-0.png").string()).image.pixels,
            data::decode_image_file(drawn[0].string()).image.pixels);
  // The progress grid is in the last checkpoint too, as an HDF5 IMAGE.
  const auto info = test::run_cli({"inspect", (dir / "out" / "checkpoints" / "checkpoint-2.h5").string()});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("/samples/progress: the progress grid, 80 x " + std::to_string(grid.height) + " px"),
            std::string::npos)
      << info.out;
  const auto bad = test::run_cli({"train", (dir / "run.toml").string(), "--set", "output.license=\"my license\""});
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_NE(bad.err.find("output.license: expected an SPDX license id"), std::string::npos) << bad.err;
}

TEST(Train, TextEncoderLoraIsTrainedExportedAndApplied) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  test::write_file(dir / "run.toml",
                   tiny_config(dir / "out", test::subjects_dir() / "chelsea",
                               "max_steps = 3\nbatch_size = 2\nlearning_rate = 1e-3\n",
                               "[lora]\ntrain_text_encoder = true\ntext_encoder_lr = 1e-3\n"
                               "[validation]\nprompts = [\"sks cat\"]\nnum_images = 1\nsteps = 2\n"));
  const auto r = test::run_cli({"train", (dir / "run.toml").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("224 UNet projections and 24 text-encoder projections"), std::string::npos) << r.err;
  const std::string path = (dir / "out" / "pytorch_lora_weights.safetensors").string();
  const auto lora = io::SafetensorsFile::open(path);
  EXPECT_EQ(lora->tensors().size(), 448u + 2 * 24u);
  EXPECT_NE(lora->find("text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_linear_layer.down.weight"),
            nullptr);
  EXPECT_NE(lora->find("text_encoder_2.text_model.encoder.layers.2.self_attn.out_proj.lora_linear_layer.up.weight"),
            nullptr);
  const auto g = test::run_cli({"generate", "--model", (test::reference_dir() / "tiny-sdxl").string(), "--prompt",
                                "sks cat", "--size", "64x64", "--steps", "2", "--out", (dir / "gen").string(),
                                "--lora", path});
  ASSERT_EQ(g.exit_code, 0) << g.err;
  EXPECT_NE(g.err.find("248 adapters merged with scale 1.0, 0 unused (24 in the text encoders)"), std::string::npos)
      << g.err;
}

// kohya's loss and noise options through the real binary: a pseudo-Huber loss, pyramid noise and
// a timestep window train; bounds outside the scheduler's timesteps are one clear error.
TEST(Train, HuberLossPyramidNoiseAndATimestepWindow) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  test::write_file(dir / "run.toml",
                   tiny_config(dir / "out", test::subjects_dir() / "chelsea",
                               "max_steps = 2\nbatch_size = 2\nloss = \"huber\"\nhuber_schedule = \"snr\"\n"
                               "multires_noise_iterations = 6\nmin_timestep = 100\nmax_timestep = 900\n"));
  const auto r = test::run_cli({"train", (dir / "run.toml").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto losses = read_losses(dir / "out" / "metrics.csv");
  ASSERT_EQ(losses.size(), 2u);
  for (double l : losses) EXPECT_TRUE(std::isfinite(l) && l > 0) << l;
  const auto bad = test::run_cli({"train", (dir / "run.toml").string(), "--set", "train.max_timestep=5000", "--set",
                                  "output.dir=\"" + (dir / "out2").string() + "\""});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("must satisfy 0 <= min < max <= 1000, the num_train_timesteps of"), std::string::npos)
      << bad.err;
  EXPECT_FALSE(fs::exists(dir / "out2" / "train_config.toml"));
}

// lora.preset = "kohya" (every linear layer of the transformer blocks) and lora.blocks through
// the real binary; both LoRA files apply every adapter in generate.
TEST(Train, KohyaPresetAndBlocks) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  test::write_file(dir / "run.toml", tiny_config(dir / "out", test::subjects_dir() / "chelsea",
                                                 "max_steps = 2\nbatch_size = 2\n", "[lora]\npreset = \"kohya\"\n"));
  const auto r = test::run_cli({"train", (dir / "run.toml").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto at = r.err.find("LoRA rank 4, alpha 4.0 on ");
  ASSERT_NE(at, std::string::npos) << r.err;
  const int modules = std::stoi(r.err.substr(at + std::string("LoRA rank 4, alpha 4.0 on ").size()));
  EXPECT_GT(modules, 224);  // the attention projections and more
  for (const char* file : {"pytorch_lora_weights.safetensors", "out.safetensors"}) {
    const auto g = test::run_cli({"generate", "--model", (test::reference_dir() / "tiny-sdxl").string(), "--prompt",
                                  "sks cat", "--size", "64x64", "--steps", "2", "--out",
                                  (dir / (std::string("gen-") + file)).string(), "--lora", (dir / "out" / file).string()});
    ASSERT_EQ(g.exit_code, 0) << g.err;
    EXPECT_NE(g.err.find(std::to_string(modules) + " adapters merged with scale 1.0, 0 unused"), std::string::npos)
        << g.err;
  }
  const auto blocks = test::run_cli({"train", (dir / "run.toml").string(), "--set",
                                     "lora.blocks=[\"up_blocks.0.attentions.0\"]", "--set",
                                     "output.dir=\"" + (dir / "blocks").string() + "\""});
  ASSERT_EQ(blocks.exit_code, 0) << blocks.err;
  const auto b_at = blocks.err.find("LoRA rank 4, alpha 4.0 on ");
  ASSERT_NE(b_at, std::string::npos) << blocks.err;
  EXPECT_LT(std::stoi(blocks.err.substr(b_at + std::string("LoRA rank 4, alpha 4.0 on ").size())), modules);
  const auto both = test::run_cli({"train", (dir / "run.toml").string(), "--set", "lora.targets=[\"to_q\"]"});
  EXPECT_EQ(both.exit_code, 2);
  EXPECT_NE(both.err.find("lora.preset and lora.targets"), std::string::npos) << both.err;
}

// Datasets as users bring them, through the real binary: an imagefolder with metadata.jsonl
// captions and a kohya folder whose repeats multiply its examples; caption dropout trains.
TEST(Train, ImagefolderAndKohyaDatasets) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  const auto chelsea = test::subjects_dir() / "chelsea";
  fs::create_directories(dir / "hf");
  fs::create_symlink(chelsea / "01.jpg", dir / "hf" / "01.jpg");
  fs::create_symlink(chelsea / "02.png", dir / "hf" / "02.png");
  test::write_file(dir / "hf" / "metadata.jsonl",
                   "{\"file_name\": \"01.jpg\", \"text\": \"sks cat on a chair\"}\n"
                   "{\"file_name\": \"02.png\", \"text\": \"sks cat outside\"}\n");
  test::write_file(dir / "hf.toml", tiny_config(dir / "out-hf", dir / "hf", "max_steps = 2\nbatch_size = 2\n"));
  const auto hf = test::run_cli({"train", (dir / "hf.toml").string(), "--set", "data.caption_dropout=0.5"});
  ASSERT_EQ(hf.exit_code, 0) << hf.err;
  EXPECT_NE(hf.err.find("images listed (imagefolder layout)"), std::string::npos) << hf.err;
  EXPECT_NE(hf.err.find("2 images, 2 with captions, 2 examples"), std::string::npos) << hf.err;

  fs::create_directories(dir / "kohya" / "3_sks cat");
  fs::create_symlink(chelsea / "01.jpg", dir / "kohya" / "3_sks cat" / "01.jpg");
  fs::create_symlink(chelsea / "03.jpg", dir / "kohya" / "3_sks cat" / "03.jpg");
  test::write_file(dir / "kohya" / "3_sks cat" / "01.txt", "sks cat, indoors\n");
  test::write_file(dir / "kohya.toml", tiny_config(dir / "out-kohya", dir / "kohya", "max_steps = 2\nbatch_size = 2\n"));
  const auto kohya = test::run_cli({"train", (dir / "kohya.toml").string()});
  ASSERT_EQ(kohya.exit_code, 0) << kohya.err;
  EXPECT_NE(kohya.err.find("images listed (kohya layout)"), std::string::npos) << kohya.err;
  EXPECT_NE(kohya.err.find("2 images, 1 with captions, 6 examples"), std::string::npos) << kohya.err;

  // A metadata row naming a missing file: exit 2 before anything is written.
  test::write_file(dir / "hf" / "metadata.jsonl", "{\"file_name\": \"09.jpg\", \"text\": \"x\"}\n");
  test::write_file(dir / "bad.toml", tiny_config(dir / "out-bad", dir / "hf", "max_steps = 2\n"));
  const auto bad = test::run_cli({"train", (dir / "bad.toml").string()});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("metadata.jsonl line 1: file_name '09.jpg' does not exist"), std::string::npos) << bad.err;
  EXPECT_FALSE(fs::exists(dir / "out-bad"));
}

// model.variant is checked for every component before anything is written (diffusers' script
// loads each with variant=…): tiny-sdxl has an fp16 UNet only.
TEST(Train, AVariantMissingFromAComponentIsAConfigError) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  test::write_file(dir / "run.toml", tiny_config(dir / "out", test::subjects_dir() / "chelsea", "max_steps = 1\n"));
  const auto r = test::run_cli({"train", (dir / "run.toml").string(), "--set", "model.variant=\"fp16\""});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("model.variant = 'fp16': '"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("tiny-sdxl/vae' has no weights of that variant"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "out"));
  // generate and model-info fall back per component, as diffusers' pipeline does, and say so.
  const std::string model = (test::reference_dir() / "tiny-sdxl").string();
  const auto g = test::run_cli({"generate", "--model", model, "--variant", "fp16", "--prompt", "sks cat", "--size",
                                "64x64", "--steps", "1", "--out", (dir / "gen").string()});
  EXPECT_EQ(g.exit_code, 0) << g.err;
  EXPECT_NE(g.err.find("warning: variant 'fp16': '"), std::string::npos) << g.err;
  EXPECT_NE(g.err.find("tiny-sdxl/vae' has no weights of that variant; its full-precision files are loaded"),
            std::string::npos)
      << g.err;
  const auto info = test::run_cli({"model-info", model, "--variant", "fp16"});
  EXPECT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("tiny-sdxl/text_encoder_2' has no weights of that variant"), std::string::npos) << info.out;
}

// data.shuffle_tags (kohya's --shuffle_caption with --keep_tokens): tag captions are shuffled
// per example and step, so the run differs from an unshuffled one, yet the same seed gives the
// same LoRA; keep_tokens without shuffling is a configuration error.
TEST(Train, ShuffledCaptionTagsAreReproducible) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  const auto chelsea = test::subjects_dir() / "chelsea";
  fs::create_directories(dir / "tags");
  fs::create_symlink(chelsea / "01.jpg", dir / "tags" / "01.jpg");
  fs::create_symlink(chelsea / "02.png", dir / "tags" / "02.png");
  test::write_file(dir / "tags" / "01.txt", "sks cat, sitting, chair, indoors, orange fur, looking at viewer\n");
  test::write_file(dir / "tags" / "02.txt", "sks cat, outdoors, grass, sunlight, tabby\n");
  test::write_file(dir / "run.toml", tiny_config(dir / "plain", dir / "tags", "max_steps = 3\nbatch_size = 2\n"));
  const std::string captions = "data.caption_ext=\".txt\"";
  const auto plain = test::run_cli({"train", (dir / "run.toml").string(), "--set", captions});
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  std::vector<std::string> loras;
  for (const char* name : {"shuffled", "again"}) {
    const auto r = test::run_cli({"train", (dir / "run.toml").string(), "--set", captions, "--set",
                                  "data.shuffle_tags=true", "--set",
                                  "data.keep_tokens=1", "--set",
                                  "output.dir=\"" + (dir / name).string() + "\""});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    loras.push_back(test::read_file(dir / name / "pytorch_lora_weights.safetensors"));
  }
  EXPECT_EQ(loras[0], loras[1]);
  EXPECT_NE(loras[0], test::read_file(dir / "plain" / "pytorch_lora_weights.safetensors"));
  const auto separator = test::run_cli({"train", (dir / "run.toml").string(), "--set", "data.caption_separator=\";\""});
  EXPECT_EQ(separator.exit_code, 2);
  EXPECT_NE(separator.err.find("data.caption_separator only applies with data.shuffle_tags = true"), std::string::npos)
      << separator.err;
  const auto keep = test::run_cli({"train", (dir / "run.toml").string(), "--set", "data.keep_tokens=1"});
  EXPECT_EQ(keep.exit_code, 2);
  EXPECT_NE(keep.err.find("data.keep_tokens = 1 only applies with data.shuffle_tags = true"), std::string::npos)
      << keep.err;
}
