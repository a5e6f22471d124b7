// lora.preset = "kohya_conv" (kohya's LoCon) end to end through the real binary: 4-D adapters on
// the resnets' and samplers' convolutions in both files under kohya's names, a preempted run
// resuming to the same bits, `export` from a checkpoint writing the same tensors, and both files
// drawing the same picture merged or at run time.
#include "sdxl_dreambooth/io/safetensors.h"
#include "support/generated_pixels.h"
#include "support/process.h"
#include "support/reference.h"

#include <gtest/gtest.h>

#include <sstream>

using namespace sdxl;
namespace fs = std::filesystem;

namespace {

std::string locon_run_config(const fs::path& out) {
  std::ostringstream s;
  s << "[model]\npretrained = \"" << (test::reference_dir() / "tiny-sdxl").string() << "\"\n"
    << "[data]\ninstance_dir = \"" << (test::subjects_dir() / "chelsea").string() << "\"\n"
    << "instance_prompt = \"a photo of sks cat\"\nresolution = 64\ncenter_crop = true\n"
    << "[lora]\npreset = \"kohya_conv\"\nconv_rank = 2\nconv_alpha = 1.0\n"
    << "[train]\nseed = 0\nlearning_rate = 1e-2\nbatch_size = 2\nmax_steps = 6\n"
    << "[checkpoint]\nevery_steps = 3\n"
    << "[output]\ndir = \"" << out.string() << "\"\n";
  return s.str();
}

std::vector<std::uint8_t> tensor_bytes(const io::SafetensorsFile& f, const std::string& name) {
  const io::TensorInfo* t = f.find(name);
  if (!t) return {};
  return std::vector<std::uint8_t>(f.data(*t), f.data(*t) + (t->end - t->begin));
}

}  // namespace

TEST(LoconTraining, FilesResumeExportAndGenerate) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  test::write_file(dir / "straight.toml", locon_run_config(dir / "out"));
  test::write_file(dir / "stopped.toml", locon_run_config(dir / "out2"));
  const auto straight = test::run_cli({"train", (dir / "straight.toml").string()});
  ASSERT_EQ(straight.exit_code, 0) << straight.err;
  EXPECT_NE(straight.err.find("319 UNet projections and 49 convolutions"), std::string::npos) << straight.err;

  const std::string kohya_file = (dir / "out" / "out.safetensors").string();
  const auto kohya = io::SafetensorsFile::open(kohya_file);
  const auto* down = kohya->find("lora_unet_input_blocks_1_0_in_layers_2.lora_down.weight");
  const auto* up = kohya->find("lora_unet_input_blocks_1_0_in_layers_2.lora_up.weight");
  ASSERT_NE(down, nullptr);
  ASSERT_NE(up, nullptr);
  EXPECT_EQ(down->shape, (std::vector<std::int64_t>{2, 32, 3, 3}));
  EXPECT_EQ(up->shape, (std::vector<std::int64_t>{32, 2, 1, 1}));
  EXPECT_NE(kohya->find("lora_unet_input_blocks_3_0_op.lora_down.weight"), nullptr);
  EXPECT_NE(kohya->find("lora_unet_output_blocks_2_2_conv.lora_down.weight"), nullptr);
  EXPECT_NE(kohya->find("lora_unet_input_blocks_1_0_emb_layers_1.lora_down.weight"), nullptr);
  EXPECT_EQ(kohya->metadata().at("ss_network_args"), R"({"conv_dim": "2", "conv_alpha": "1.0"})");
  const std::string diffusers_file = (dir / "out" / "pytorch_lora_weights.safetensors").string();
  const auto diffusers = io::SafetensorsFile::open(diffusers_file);
  ASSERT_NE(diffusers->find("unet.down_blocks.0.resnets.0.conv1.lora.down.weight"), nullptr);
  EXPECT_EQ(diffusers->find("unet.down_blocks.0.resnets.0.conv1.lora.up.weight")->shape,
            (std::vector<std::int64_t>{32, 2, 1, 1}));

  // Preempted during step 4, resumed from checkpoint 3: the same bits.
  const auto [stopped, resumed] = test::preempt_and_resume(dir / "stopped.toml", 4);
  ASSERT_EQ(stopped.exit_code, 75) << stopped.err;
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(test::read_file(diffusers_file), test::read_file(dir / "out2" / "pytorch_lora_weights.safetensors"));
  // Another conv_alpha does not resume it.
  const auto other = test::run_cli({"train", (dir / "stopped.toml").string(), "--set", "checkpoint.resume=\"latest\"",
                                    "--set", "lora.conv_alpha=2.0", "--set", "train.max_steps=7"});
  EXPECT_EQ(other.exit_code, 2);
  EXPECT_NE(other.err.find("has convolution adapters of rank 2, alpha 1.0, the config asks for lora.conv_rank = 2, "
                           "lora.conv_alpha = 2.0"),
            std::string::npos)
      << other.err;

  // export from the last checkpoint writes the run's tensors.
  const std::string exported = (dir / "exported.safetensors").string();
  const auto exp = test::run_cli({"export", (dir / "out" / "checkpoints" / "checkpoint-6.h5").string(), "--out",
                                  exported, "--format", "kohya"});
  ASSERT_EQ(exp.exit_code, 0) << exp.err;
  const auto re = io::SafetensorsFile::open(exported);
  for (const char* name : {"lora_unet_input_blocks_1_0_in_layers_2.lora_down.weight",
                           "lora_unet_input_blocks_1_0_in_layers_2.alpha",
                           "lora_unet_output_blocks_2_2_conv.lora_up.weight"}) {
    EXPECT_EQ(tensor_bytes(*re, name), tensor_bytes(*kohya, name)) << name;
  }

  // Both files give the same picture, merged or applied at run time, and not the base model's.
  test::expect_files_draw_alike(dir.path(), diffusers_file, kohya_file);

  // A preset inside lora.blocks adapts what each block has (an up block: no downsampler).
  const auto block = test::run_cli({"train", (dir / "straight.toml").string(), "--set", "lora.blocks=[\"up_blocks.0\"]",
                                    "--set", "train.max_steps=1", "--set",
                                    "output.dir=\"" + (dir / "block").string() + "\""});
  EXPECT_EQ(block.exit_code, 0) << block.err;
  EXPECT_NE(block.err.find("(3x3 convolutions: rank 2, alpha 1.0) on "), std::string::npos) << block.err;

  // DoRA has no convolution form here: a configuration error before anything is written.
  const auto dora = test::run_cli({"train", (dir / "straight.toml").string(), "--set", "lora.use_dora=true", "--set",
                                   "output.dir=\"" + (dir / "dora").string() + "\""});
  EXPECT_EQ(dora.exit_code, 2);
  EXPECT_NE(dora.err.find("DoRA on convolutions is not supported"), std::string::npos) << dora.err;
  EXPECT_FALSE(fs::exists(dir / "dora"));
}
