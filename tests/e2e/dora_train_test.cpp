// lora.use_dora end to end through the real binary: the diffusers file carries exactly the keys
// diffusers 0.27.2 saves for a DoRA, the kohya file LyCORIS's dora_scale; a preempted run
// resumes to the same bits; both files generate the same image, merged or at run time; a
// checkpoint of one kind does not resume a run of the other.
#include "sdxl_dreambooth/io/png_writer.h"
#include "sdxl_dreambooth/io/safetensors.h"
#include "support/generated_pixels.h"
#include "support/process.h"
#include "support/reference.h"

#include <gtest/gtest.h>

#include <map>
#include <sstream>

using namespace sdxl;
namespace fs = std::filesystem;

namespace {

std::string dora_run_config(const fs::path& out) {
  std::ostringstream s;
  s << "[model]\npretrained = \"" << (test::reference_dir() / "tiny-sdxl").string() << "\"\n"
    << "[data]\ninstance_dir = \"" << (test::subjects_dir() / "chelsea").string() << "\"\n"
    << "instance_prompt = \"a photo of sks cat\"\nresolution = 64\ncenter_crop = true\n"
    << "[lora]\nuse_dora = true\n"
    << "[train]\nseed = 0\nlearning_rate = 1e-2\nbatch_size = 2\nmax_steps = 6\n"
    << "[checkpoint]\nevery_steps = 3\n"
    << "[output]\ndir = \"" << out.string() << "\"\n";
  return s.str();
}

std::map<std::string, std::vector<std::int64_t>> names_and_shapes(const std::string& path) {
  std::map<std::string, std::vector<std::int64_t>> out;
  const auto file = io::SafetensorsFile::open(path);
  for (const auto& t : file->tensors()) out[t.name] = t.shape;
  return out;
}

}  // namespace

TEST(DoraTraining, FilesResumeAndGenerate) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  test::write_file(dir / "straight.toml", dora_run_config(dir / "out"));
  test::write_file(dir / "stopped.toml", dora_run_config(dir / "out2"));
  const auto straight = test::run_cli({"train", (dir / "straight.toml").string()});
  ASSERT_EQ(straight.exit_code, 0) << straight.err;
  EXPECT_NE(straight.err.find("DoRA rank 4, alpha 4.0 on 224 UNet projections"), std::string::npos) << straight.err;

  const std::string diffusers_file = (dir / "out" / "pytorch_lora_weights.safetensors").string();
  EXPECT_EQ(names_and_shapes(diffusers_file),
            names_and_shapes((test::reference_dir() / "vectors" / "lora_dora_diffusers_format.safetensors").string()));
  const std::string kohya_file = (dir / "out" / "out.safetensors").string();
  const auto kohya = io::SafetensorsFile::open(kohya_file);
  const auto* scale = kohya->find("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.dora_scale");
  ASSERT_NE(scale, nullptr);
  EXPECT_EQ(scale->shape, (std::vector<std::int64_t>{64, 1}));
  EXPECT_EQ(kohya->metadata().at("ss_network_module"), "lycoris.kohya");

  // Preempted during step 4, resumed from checkpoint 3: the same LoRA bits.
  const auto [stopped, resumed] = test::preempt_and_resume(dir / "stopped.toml", 4);
  ASSERT_EQ(stopped.exit_code, 75) << stopped.err;
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(test::read_file(dir / "out" / "pytorch_lora_weights.safetensors"),
            test::read_file(dir / "out2" / "pytorch_lora_weights.safetensors"));
  const auto info = test::run_cli({"inspect", (dir / "out2" / "checkpoints" / "checkpoint-6.h5").string()});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("unet: 224 DoRA adapters, rank 4"), std::string::npos) << info.out;
  // A DoRA checkpoint does not resume a plain-LoRA run.
  const auto plain = test::run_cli({"train", (dir / "stopped.toml").string(), "--set", "checkpoint.resume=\"latest\"",
                                    "--set", "lora.use_dora=false", "--set", "train.max_steps=7"});
  EXPECT_EQ(plain.exit_code, 2);
  EXPECT_NE(plain.err.find("holds DoRA adapters, the config asks for lora.use_dora = false"), std::string::npos)
      << plain.err;

  // Both files give the same picture, merged or applied at run time, and not the base model's.
  const auto base = test::expect_files_draw_alike(dir.path(), diffusers_file, kohya_file);
  EXPECT_EQ(test::tiny_generated_pixels(dir / "zero", "sks cat", 3, {"--lora", diffusers_file, "--lora-scale", "0"}),
            base);
}
