// EDM-style training end to end through the real binary: train.edm_style on SDXL's own
// schedule, and an EDM base (a pipeline whose scheduler is EDMEulerScheduler with Playground
// v2.5's settings and whose VAE has latents_mean / latents_std) that trains EDM-style by itself,
// validates and generates with the EDM samplers; SNR-γ with either is refused.
#include "sdxl_dreambooth/io/event_file.h"
#include "support/process.h"
#include "tensorboard_event.pb.h"
#include "support/reference.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

using namespace sdxl;
namespace fs = std::filesystem;

namespace {

std::string edm_run_config(const fs::path& model, const fs::path& out) {
  std::ostringstream s;
  s << "[model]\npretrained = \"" << model.string() << "\"\n"
    << "[data]\ninstance_dir = \"" << (test::subjects_dir() / "chelsea").string() << "\"\n"
    << "instance_prompt = \"a photo of sks cat\"\nresolution = 64\ncenter_crop = true\n"
    << "[train]\nseed = 0\nlearning_rate = 1e-3\nbatch_size = 2\nmax_steps = 3\n"
    << "[validation]\nprompts = [\"sks cat\"]\nnum_images = 1\nsteps = 3\nevery_steps = 2\n"
    << "[output]\ndir = \"" << out.string() << "\"\n";
  return s.str();
}

// tiny-sdxl with the EDM scheduler of the reference and per-channel latent statistics in its
// VAE config (weights linked, not copied).
fs::path edm_base(const fs::path& dir) {
  const fs::path tiny = test::reference_dir() / "tiny-sdxl", model = dir / "edm-base";
  fs::create_directories(model / "vae");
  fs::create_directories(model / "scheduler");
  for (const auto& e : fs::directory_iterator(tiny)) {
    const auto name = e.path().filename().string();
    if (name != "vae" && name != "scheduler" && name != "model_index.json") fs::create_symlink(e.path(), model / name);
  }
  fs::create_symlink(tiny / "vae" / "diffusion_pytorch_model.safetensors",
                     model / "vae" / "diffusion_pytorch_model.safetensors");
  nlohmann::json vae = nlohmann::json::parse(test::read_file(tiny / "vae" / "config.json"));
  vae["latents_mean"] = {0.05, -0.1, 0.2, 0.0};
  vae["latents_std"] = {0.9, 1.1, 1.0, 0.8};
  test::write_file(model / "vae" / "config.json", vae.dump(2));
  fs::copy_file(test::reference_dir() / "edm-scheduler" / "scheduler_config.json",
                model / "scheduler" / "scheduler_config.json");
  nlohmann::json index = nlohmann::json::parse(test::read_file(tiny / "model_index.json"));
  index["scheduler"] = {"diffusers", "EDMEulerScheduler"};
  test::write_file(model / "model_index.json", index.dump(2));
  return model;
}

}  // namespace

TEST(EdmTraining, EulerScheduleAndEdmBase) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  const fs::path tiny = test::reference_dir() / "tiny-sdxl";
  test::write_file(dir / "euler.toml", edm_run_config(tiny, dir / "euler"));
  const auto euler = test::run_cli({"train", (dir / "euler.toml").string(), "--set", "train.edm_style=true"});
  ASSERT_EQ(euler.exit_code, 0) << euler.err;
  EXPECT_NE(euler.err.find("EDM-style training on the Euler schedule of the base's betas"), std::string::npos)
      << euler.err;
  const auto snr = test::run_cli({"train", (dir / "euler.toml").string(), "--set", "train.edm_style=true", "--set",
                                  "train.snr_gamma=5.0"});
  EXPECT_EQ(snr.exit_code, 2);
  EXPECT_NE(snr.err.find("train.snr_gamma does not apply to EDM-style training"), std::string::npos) << snr.err;

  const fs::path model = edm_base(dir.path());
  test::write_file(dir / "edm.toml", edm_run_config(model, dir / "edm"));
  const auto edm = test::run_cli({"train", (dir / "edm.toml").string()});
  ASSERT_EQ(edm.exit_code, 0) << edm.err;
  EXPECT_NE(edm.err.find("EDM-style training (the base's scheduler is EDMEulerScheduler)"), std::string::npos)
      << edm.err;
  EXPECT_TRUE(fs::exists(dir / "edm" / "samples" / "progress.png"));
  // The validation images are in TensorBoard too (validation every 2 steps: step 2 and the end).
  int images = 0;
  for (const auto& f : fs::directory_iterator(dir / "edm" / "logs")) {
    for (const auto& record : io::read_event_records(f.path())) {
      tensorboard::Event e;
      ASSERT_TRUE(e.ParseFromString(record));
      for (const auto& v : e.summary().value()) images += v.has_image() && v.image().width() == 64;
    }
  }
  EXPECT_EQ(images, 2);
  const auto edm_snr =
      test::run_cli({"train", (dir / "edm.toml").string(), "--set", "train.snr_gamma=5.0", "--set",
                     "output.dir=\"" + (dir / "edm-snr").string() + "\""});
  EXPECT_EQ(edm_snr.exit_code, 2);
  EXPECT_NE(edm_snr.err.find("its scheduler EDMEulerScheduler makes the run EDM-style"), std::string::npos)
      << edm_snr.err;
  EXPECT_FALSE(fs::exists(dir / "edm-snr" / "train_config.toml"));

  // generate on the EDM base, with and without the LoRA: both EDM samplers draw images.
  for (const char* scheduler : {"euler", "dpmpp2m"}) {
    const auto g = test::run_cli({"generate", "--model", model.string(), "--prompt", "sks cat", "--size", "64x64",
                                  "--steps", "4", "--seed", "1", "--scheduler", scheduler, "--out",
                                  (dir / (std::string("gen-") + scheduler)).string(), "--lora",
                                  (dir / "edm" / "pytorch_lora_weights.safetensors").string()});
    ASSERT_EQ(g.exit_code, 0) << g.err;
    EXPECT_TRUE(fs::exists(dir / (std::string("gen-") + scheduler) / "0-0-seed1.png")) << g.err;
  }
}
