// HDF5 checkpoints: a round trip keeps every bit, the layout is what h5ls shows and the docs
// describe, bad files give one error naming the path, pruning never touches the newest, and
// a writer killed at random points never damages the previous checkpoint.
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/io/hdf5_file.h"
#include "sdxl_dreambooth/model/lora_export.h"
#include "sdxl_dreambooth/model/sgm_unet_names.h"
#include "sdxl_dreambooth/train/checkpoint_dir.h"
#include "sdxl_dreambooth/train/checkpoint_file.h"
#include "support/error_capture.h"
#include "support/process.h"

#include <gtest/gtest.h>

#include <limits>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <random>
#include <thread>

using namespace sdxl;
namespace fs = std::filesystem;

namespace {

train::ModelAdapters adapters(const std::string& model, std::int64_t rank, int seed) {
  torch::manual_seed(seed);
  train::ModelAdapters a;
  a.model = model;
  a.rank = rank;
  a.alpha = 8;
  a.targets = {"to_q", "to_v"};
  a.layers_per_block = model == "unet" ? 2 : 0;
  a.optimizer_steps = 7;
  a.peak_lr = 1e-4;
  for (const char* m : {"down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
                        "mid_block.attentions.0.transformer_blocks.0.attn2.to_v"}) {
    for (const char* half : {"lora_A", "lora_B"}) {
      train::AdapterParam p;
      p.module = m;
      p.half = half;
      p.weight = std::string(half) == "lora_A" ? torch::randn({rank, 32}) : torch::randn({48, rank});
      p.state["exp_avg"] = torch::randn_like(p.weight);
      p.state["exp_avg_sq"] = torch::rand_like(p.weight);
      a.params.push_back(p);
    }
  }
  return a;
}

train::Checkpoint sample_checkpoint(std::int64_t step = 12) {
  train::Checkpoint c;
  c.state.step = step;
  c.state.max_steps = 40;
  c.state.epoch = 3;
  c.state.samples_seen = 96;
  c.state.world_size = 2;
  c.state.data_position = 24;
  c.state.seed = 4294967295u;
  c.state.lr_scheduler = "cosine";
  c.state.lr = 3.5e-5;
  c.state.loss_scale = 32768;
  c.state.loss_scale_good_steps = 11;
  c.state.skipped_steps = 1;
  c.adapters = {adapters("unet", 4, 1), adapters("text_encoder", 4, 2)};
  c.optimizer.weight_decay = 0.01;
  c.config_toml = "[model]\npretrained = \"stabilityai/stable-diffusion-xl-base-1.0\"\n[data]\nresolution = 1024\n";
  c.provenance = {{"program_version", "0.1.0"}, {"created", "2026-11-25T00:00:00Z"}, {"base_model", "x/y"}};
  c.base_model_files = {{"unet/diffusion_pytorch_model.safetensors", 1234, std::string(64, 'a')}};
  for (int i = 1; i <= 12; ++i) c.metrics.push_back({i, 1.0 / i, 1e-4, 0.5 * i, 0.25});
  train::SampleImage img;
  img.step = 10;
  img.prompt = "a photo of sks dog";
  img.prompt_index = 0;
  img.image_index = 1;
  img.seed = 42;
  img.rgb = torch::randint(0, 256, {64, 48, 3}, torch::kByte);
  c.samples.push_back(img);
  return c;
}

void expect_same(const train::Checkpoint& a, const train::Checkpoint& b) {
  EXPECT_EQ(a.state.step, b.state.step);
  EXPECT_EQ(a.state.seed, b.state.seed);
  EXPECT_EQ(a.state.lr, b.state.lr);
  EXPECT_EQ(a.state.loss_scale, b.state.loss_scale);
  EXPECT_EQ(a.state.loss_scale_good_steps, b.state.loss_scale_good_steps);
  EXPECT_EQ(a.state.lr_scheduler, b.state.lr_scheduler);
  EXPECT_EQ(a.state.data_position, b.state.data_position);
  EXPECT_EQ(a.config_toml, b.config_toml);
  EXPECT_EQ(a.provenance, b.provenance);
  ASSERT_EQ(a.base_model_files.size(), b.base_model_files.size());
  EXPECT_EQ(a.base_model_files[0].to_line(), b.base_model_files[0].to_line());
  EXPECT_EQ(a.optimizer.weight_decay, b.optimizer.weight_decay);
  ASSERT_EQ(a.adapters.size(), b.adapters.size());
  for (std::size_t m = 0; m < a.adapters.size(); ++m) {
    const auto& x = a.adapters[m];
    const auto* y = b.find(x.model);
    ASSERT_NE(y, nullptr) << x.model;
    EXPECT_EQ(x.rank, y->rank);
    EXPECT_EQ(x.alpha, y->alpha);
    EXPECT_EQ(x.targets, y->targets);
    EXPECT_EQ(x.optimizer_steps, y->optimizer_steps);
    EXPECT_EQ(x.layers_per_block, y->layers_per_block);
    ASSERT_EQ(x.params.size(), y->params.size());
    for (const auto& p : x.params) {
      bool found = false;
      for (const auto& q : y->params) {
        if (q.module != p.module || q.half != p.half) continue;
        found = true;
        EXPECT_TRUE(torch::equal(p.weight, q.weight)) << p.module << " " << p.half;
        ASSERT_EQ(p.state.size(), q.state.size());
        for (const auto& [name, t] : p.state) EXPECT_TRUE(torch::equal(t, q.state.at(name))) << name;
      }
      EXPECT_TRUE(found) << p.module << " " << p.half;
    }
  }
  ASSERT_EQ(a.metrics.size(), b.metrics.size());
  EXPECT_EQ(a.metrics.back().grad_norm, b.metrics.back().grad_norm);
  ASSERT_EQ(a.samples.size(), b.samples.size());
  EXPECT_EQ(a.samples[0].prompt, b.samples[0].prompt);
  EXPECT_EQ(a.samples[0].seed, b.samples[0].seed);
  EXPECT_TRUE(torch::equal(a.samples[0].rgb, b.samples[0].rgb));
}

using test::error_of;

}  // namespace

TEST(CheckpointFile, RoundTripKeepsEveryBit) {
  test::TempDir dir;
  const auto c = sample_checkpoint();
  const fs::path path = train::save_checkpoint(dir.path(), c);
  EXPECT_EQ(path, dir / "checkpoint-12.h5");
  EXPECT_FALSE(fs::exists(dir / "checkpoint-12.h5.tmp"));
  expect_same(c, train::read_checkpoint_file(path.string()));
}

TEST(CheckpointFile, LayoutIsWhatH5lsShows) {
  test::TempDir dir;
  const fs::path path = train::save_checkpoint(dir.path(), sample_checkpoint());
  const auto r = test::run_process({"h5ls", "-r", path.string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* line :
       {"/config/toml              Dataset {1}", "/lora/unet/down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q/lora_A Dataset {4, 32}",
        "/lora/text_encoder Group", "/optimizer/unet/mid_block.attentions.0.transformer_blocks.0.attn2.to_v/lora_B/exp_avg_sq Dataset {48, 4}",
        "/metrics/loss             Dataset {12}", "/samples/step_10/0        Dataset {64, 48, 3}", "/state                   Group"}) {
    const std::string want = line;
    // h5ls pads names to a column; compare with runs of spaces collapsed.
    auto squash = [](std::string s) {
      std::string out;
      for (char ch : s) {
        if (ch == ' ' && !out.empty() && out.back() == ' ') continue;
        out += ch;
      }
      return out;
    };
    EXPECT_NE(squash(r.out).find(squash(want)), std::string::npos) << want << "\n" << r.out;
  }
  // The HDF5 image attributes viewers look for, exactly as H5IMmake_image_24bit writes them.
  const auto a = test::run_process({"h5dump", "-a", "/samples/step_10/0/CLASS", path.string()});
  EXPECT_NE(a.out.find("STRSIZE 6;"), std::string::npos) << a.out;
  EXPECT_NE(a.out.find("\"IMAGE\""), std::string::npos) << a.out;
  const auto v = test::run_process({"h5dump", "-a", "/format_version", path.string()});
  EXPECT_NE(v.out.find("(0): 2"), std::string::npos) << v.out;
}

TEST(CheckpointFile, BadFilesGiveOneErrorNamingThePath) {
  test::TempDir dir;
  const fs::path good = train::save_checkpoint(dir.path(), sample_checkpoint());

  // Truncated (what a copy interrupted half-way leaves).
  const std::string bytes = test::read_file(good);
  test::write_file(dir / "truncated.h5", bytes.substr(0, bytes.size() / 2));
  std::string e = error_of([&] { train::read_checkpoint_file((dir / "truncated.h5").string()); });
  EXPECT_NE(e.find("truncated.h5"), std::string::npos) << e;
  EXPECT_NE(e.find("not a readable HDF5 file"), std::string::npos) << e;

  test::write_file(dir / "text.h5", "hello\n");
  e = error_of([&] { train::read_checkpoint_file((dir / "text.h5").string()); });
  EXPECT_NE(e.find("text.h5: not an HDF5 file"), std::string::npos) << e;
  // A LoRA given where a checkpoint belongs, and things that are not files.
  test::write_file(dir / "lora.safetensors", std::string("\x02\0\0\0\0\0\0\0{}", 10));
  e = error_of([&] { train::read_checkpoint_file((dir / "lora.safetensors").string()); });
  EXPECT_NE(e.find("lora.safetensors: not an HDF5 file (a safetensors file: an exported LoRA, not a checkpoint)"),
            std::string::npos)
      << e;
  e = error_of([&] { train::read_checkpoint_file("/dev/zero"); });
  EXPECT_NE(e.find("'/dev/zero' is a device, not a regular file"), std::string::npos) << e;

  e = error_of([&] { train::read_checkpoint_file((dir / "missing.h5").string()); });
  EXPECT_NE(e.find("missing.h5: no such file"), std::string::npos) << e;

  // A newer format version.
  auto newer = sample_checkpoint();
  newer.format_version = 3;
  train::write_checkpoint_file((dir / "newer.h5").string(), newer);
  e = error_of([&] { train::read_checkpoint_file((dir / "newer.h5").string()); });
  EXPECT_NE(e.find("newer.h5: checkpoint format version 3; this sdxl-dreambooth reads versions 1 to 2"),
            std::string::npos)
      << e;

  // An HDF5 file that is not a checkpoint, and one with a group missing.
  {
    auto f = io::H5File::create((dir / "other.h5").string());
    f.root().create_group("data");
    f.close();
  }
  e = error_of([&] { train::read_checkpoint_file((dir / "other.h5").string()); });
  EXPECT_NE(e.find("other.h5: not an sdxl-dreambooth checkpoint"), std::string::npos) << e;
  {
    auto f = io::H5File::create((dir / "partial.h5").string());
    f.root().set_attr("format", std::string(train::kCheckpointFormat));
    f.root().set_attr("format_version", std::int64_t{1});
    f.root().create_group("config").write_text("toml", "");
    f.close();
  }
  e = error_of([&] { train::read_checkpoint_file((dir / "partial.h5").string()); });
  EXPECT_NE(e.find("partial.h5: missing group /state"), std::string::npos) << e;
}

// Damage inside the data: a flipped bit fails the tensor's Fletcher-32 checksum, and a
// non-finite adapter value (written by something else) is refused, both naming the dataset.
TEST(CheckpointFile, DamagedTensorsAreRefusedNamingTheDataset) {
  test::TempDir dir;
  auto c = sample_checkpoint();
  const fs::path good = train::save_checkpoint(dir.path(), c);
  const auto read = train::read_checkpoint_file(good.string());
  EXPECT_GT(read.integrity.datasets, 0);
  EXPECT_EQ(read.integrity.checksummed, read.integrity.datasets);

  // Flip the top exponent bit of one float of the first adapter, found by its bytes.
  const torch::Tensor w = c.adapters.front().params.front().weight.contiguous();
  const std::string needle(static_cast<const char*>(w.data_ptr()), static_cast<std::size_t>(w.nbytes()));
  std::string bytes = test::read_file(good);
  const auto at = bytes.find(needle);
  ASSERT_NE(at, std::string::npos);
  bytes[at + 7] = static_cast<char>(bytes[at + 7] ^ 0x40);
  test::write_file(dir / "flipped.h5", bytes);
  std::string e = error_of([&] { train::read_checkpoint_file((dir / "flipped.h5").string()); });
  EXPECT_NE(e.find("flipped.h5"), std::string::npos) << e;
  EXPECT_NE(e.find(c.adapters.front().params.front().module), std::string::npos) << e;

  c.adapters.front().params.back().weight[0][0] = std::numeric_limits<float>::quiet_NaN();
  train::write_checkpoint_file((dir / "nan.h5").string(), c);
  e = error_of([&] { train::read_checkpoint_file((dir / "nan.h5").string()); });
  EXPECT_NE(e.find("non-finite values"), std::string::npos) << e;
  EXPECT_NE(e.find(c.adapters.front().params.back().module), std::string::npos) << e;
}

// Strings: HDF5 keeps a variable-length string in its global heap, which has no checksum; a
// damaged length there crashed the library on read (SIGSEGV in H5HG_read). Nothing is written
// variable-length, the config text is Fletcher-32-checked and attributes sit in checksummed
// object headers, so damage to any string is an error naming the file.
TEST(CheckpointFile, DamagedStringsAreRefusedNotCrashedOn) {
  test::TempDir dir;
  const auto c = sample_checkpoint();
  const fs::path good = train::save_checkpoint(dir.path(), c);
  const auto header = test::run_process({"h5dump", "-H", "-A", good.string()});
  ASSERT_EQ(header.exit_code, 0) << header.err;
  EXPECT_EQ(header.out.find("H5T_VARIABLE"), std::string::npos) << header.out;
  const auto read = train::read_checkpoint_file(good.string());
  EXPECT_EQ(read.integrity.checksummed, read.integrity.datasets);

  const std::string bytes = test::read_file(good);
  const auto damage = [&](const std::string& needle, const std::string& name) {
    std::string b = bytes;
    const auto at = b.find(needle);
    EXPECT_NE(at, std::string::npos) << needle;
    if (at == std::string::npos) return std::string();
    EXPECT_EQ(b.find(needle, at + 1), std::string::npos) << needle << " is not unique";
    b[at + 3] = static_cast<char>(b[at + 3] ^ 0x01);
    test::write_file(dir / name, b);
    return error_of([&] { train::read_checkpoint_file((dir / name).string()); });
  };
  std::string e = damage("pretrained = \"stabilityai", "toml.h5");
  EXPECT_NE(e.find("toml.h5"), std::string::npos) << e;
  EXPECT_NE(e.find("/config/toml"), std::string::npos) << e;
  e = damage("2026-11-25T00:00:00Z", "attribute.h5");
  EXPECT_NE(e.find("attribute.h5"), std::string::npos) << e;
}

// Checkpoints of format version 1 (variable-length strings) still read.
TEST(CheckpointFile, VariableLengthStringsOfVersion1StillRead) {
  test::TempDir dir;
  const std::string path = (dir / "v1.h5").string();
  {
    auto f = io::H5File::create(path);
    {
      io::H5Group g = f.root().create_group("config");
      const hid_t type = H5Tcopy(H5T_C_S1);
      H5Tset_size(type, H5T_VARIABLE);
      H5Tset_cset(type, H5T_CSET_UTF8);
      const hid_t scalar = H5Screate(H5S_SCALAR);
      const char* text = "[model]\npretrained = \"x\"\n";
      const hid_t ds = H5Dcreate2(g.id(), "toml", type, scalar, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
      ASSERT_GE(H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, &text), 0);
      H5Dclose(ds);
      const char* host = "node07";
      const hid_t a = H5Acreate2(g.id(), "host", type, scalar, H5P_DEFAULT, H5P_DEFAULT);
      ASSERT_GE(H5Awrite(a, type, &host), 0);
      H5Aclose(a);
      const hsize_t two = 2;
      const hid_t list = H5Screate_simple(1, &two, nullptr);
      const char* files[] = {"aaa 1 /m/unet.safetensors", "bbb 2 /m/vae.safetensors"};
      const hid_t b = H5Acreate2(g.id(), "base_model_files", type, list, H5P_DEFAULT, H5P_DEFAULT);
      ASSERT_GE(H5Awrite(b, type, files), 0);
      H5Aclose(b);
      H5Sclose(list);
      H5Sclose(scalar);
      H5Tclose(type);
    }
    f.close();
  }
  auto f = io::H5File::open_read_only(path);
  const io::H5Group g = f.root().open_group("config");
  EXPECT_EQ(g.read_text("toml"), "[model]\npretrained = \"x\"\n");
  EXPECT_EQ(g.attr_string("host"), "node07");
  EXPECT_EQ(g.attr_strings("base_model_files"),
            (std::vector<std::string>{"aaa 1 /m/unet.safetensors", "bbb 2 /m/vae.safetensors"}));
}

TEST(CheckpointDir, NamesListingAndPruning) {
  EXPECT_EQ(train::checkpoint_file_name(500), "checkpoint-500.h5");
  EXPECT_EQ(train::checkpoint_step_of("checkpoint-500.h5"), 500);
  EXPECT_FALSE(train::checkpoint_step_of("checkpoint-500.h5.tmp"));
  EXPECT_FALSE(train::checkpoint_step_of("checkpoint-.h5"));
  EXPECT_FALSE(train::checkpoint_step_of("checkpoint-5x.h5"));
  test::TempDir dir;
  for (int s : {10, 2, 30, 40}) test::write_file(dir / train::checkpoint_file_name(s), "x");
  test::write_file(dir / "checkpoint-50.h5.tmp", "partial");
  test::write_file(dir / "notes.txt", "keep me");
  const auto all = train::list_checkpoints(dir.path());
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all.front().step, 2);
  EXPECT_EQ(all.back().step, 40);
  const auto removed = train::prune_checkpoints(dir.path(), 2);
  EXPECT_EQ(removed.size(), 3u);  // 2, 10 and the stale temporary
  EXPECT_TRUE(fs::exists(dir / "checkpoint-30.h5"));
  EXPECT_TRUE(fs::exists(dir / "checkpoint-40.h5"));
  EXPECT_FALSE(fs::exists(dir / "checkpoint-50.h5.tmp"));
  EXPECT_TRUE(fs::exists(dir / "notes.txt"));
  train::prune_checkpoints(dir.path(), 0);  // never below one: the newest stays
  EXPECT_TRUE(fs::exists(dir / "checkpoint-40.h5"));
  EXPECT_FALSE(fs::exists(dir / "checkpoint-30.h5"));
}

// The checkpoint writer (tests/support/checkpoint_writer.cpp) SIGKILLed at random points: the
// newest committed checkpoint is always complete, readable and holds what it claims.
TEST(CheckpointDurability, KilledWritersNeverDamageTheLastCheckpoint) {
  test::TempDir dir;
  std::mt19937 rng(1234);
  int killed_mid_write = 0;
  std::int64_t next_step = 1;
  for (int round = 0; round < 24; ++round) {
    int out[2];
    ASSERT_EQ(pipe(out), 0);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      dup2(out[1], 1);
      close(out[0]);
      execl(SDXL_CHECKPOINT_WRITER, SDXL_CHECKPOINT_WRITER, dir.path().c_str(), std::to_string(next_step).c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
    close(out[1]);
    // Wait for the writer's first commit, then kill it somewhere in the writes that follow.
    std::string seen;
    char c = 0;
    while (seen.find("committed") == std::string::npos && read(out[0], &c, 1) == 1) seen += c;
    ASSERT_NE(seen.find("committed"), std::string::npos) << "writer did not commit: " << seen;
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 700)(rng)));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    close(out[0]);
    ASSERT_TRUE(WIFSIGNALED(status));
    for (const auto& entry : fs::directory_iterator(dir.path())) {
      if (entry.path().extension() == ".tmp") ++killed_mid_write;
    }
    const auto all = train::list_checkpoints(dir.path());
    if (all.empty()) continue;
    const auto& newest = all.back();
    const train::Checkpoint ck = train::read_checkpoint_file(newest.path.string());
    EXPECT_EQ(ck.state.step, newest.step);
    ASSERT_EQ(ck.adapters.size(), 1u);
    // The writer fills its weights with the step number.
    EXPECT_TRUE(torch::all(ck.adapters[0].params[0].weight == static_cast<float>(newest.step)).item<bool>())
        << newest.path;
    next_step = newest.step + 1;
  }
  std::cout << "24 writers killed, " << killed_mid_write << " inside a write; newest checkpoint " << next_step - 1
            << " intact every time\n";
  EXPECT_GE(next_step, 25) << "every round commits at least once";
  EXPECT_GE(killed_mid_write, 4) << "too few kills landed inside a write to mean anything";
}

TEST(SgmNames, MapDiffusersAttentionBlocksLikeKohya) {
  using model::diffusers_to_sgm_unet_path;
  EXPECT_EQ(diffusers_to_sgm_unet_path("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q", 2),
            "input_blocks.4.1.transformer_blocks.0.attn1.to_q");
  EXPECT_EQ(diffusers_to_sgm_unet_path("down_blocks.2.attentions.1.transformer_blocks.9.attn2.to_out.0", 2),
            "input_blocks.8.1.transformer_blocks.9.attn2.to_out.0");
  EXPECT_EQ(diffusers_to_sgm_unet_path("mid_block.attentions.0.transformer_blocks.3.attn1.to_k", 2),
            "middle_block.1.transformer_blocks.3.attn1.to_k");
  EXPECT_EQ(diffusers_to_sgm_unet_path("up_blocks.0.attentions.2.transformer_blocks.0.attn1.to_v", 2),
            "output_blocks.2.1.transformer_blocks.0.attn1.to_v");
  EXPECT_EQ(diffusers_to_sgm_unet_path("up_blocks.1.attentions.0.proj_in", 2), "output_blocks.3.1.proj_in");
  // LoCon's layers (kohya's names for ResnetBlock2D / Downsample2D / Upsample2D).
  EXPECT_EQ(diffusers_to_sgm_unet_path("down_blocks.0.resnets.0.conv1", 2), "input_blocks.1.0.in_layers.2");
  EXPECT_EQ(diffusers_to_sgm_unet_path("down_blocks.1.resnets.0.conv_shortcut", 2), "input_blocks.4.0.skip_connection");
  EXPECT_EQ(diffusers_to_sgm_unet_path("mid_block.resnets.1.conv2", 2), "middle_block.2.out_layers.3");
  EXPECT_EQ(diffusers_to_sgm_unet_path("up_blocks.2.resnets.2.time_emb_proj", 2), "output_blocks.8.0.emb_layers.1");
  EXPECT_EQ(diffusers_to_sgm_unet_path("down_blocks.1.downsamplers.0.conv", 2), "input_blocks.6.0.op");
  EXPECT_EQ(diffusers_to_sgm_unet_path("up_blocks.1.upsamplers.0.conv", 2), "output_blocks.5.2.conv");
  EXPECT_EQ(diffusers_to_sgm_unet_path("up_blocks.0.upsamplers.0.conv", 2, {0}), "output_blocks.2.1.conv");
  EXPECT_FALSE(diffusers_to_sgm_unet_path("down_blocks.0.resnets.0.norm1", 2));
  EXPECT_EQ(model::plain_up_blocks_from_paths({"up_blocks.0.attentions.0.proj_in", "up_blocks.0.resnets.0.conv1",
                                                "up_blocks.2.resnets.0.conv1"}),
            std::vector<int>{2});
  EXPECT_EQ(model::layers_per_block_from_paths({"down_blocks.1.attentions.1.x", "up_blocks.0.attentions.2.x"}), 2);
}

TEST(LoraExport, KohyaNamesAlphaAndDiffusersFolding) {
  model::ModelLoraWeights unet;
  unet.model = "unet";
  unet.rank = 4;
  unet.alpha = 8;
  unet.layers_per_block = 2;
  unet.adapters.push_back({"down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q", torch::ones({4, 16}),
                           torch::ones({16, 4})});
  model::ModelLoraWeights te = unet;
  te.model = "text_encoder_2";
  te.adapters = {{"text_model.encoder.layers.0.self_attn.q_proj", torch::ones({4, 16}), torch::ones({16, 4})}};
  const auto kohya = model::lora_file_tensors({unet, te}, model::LoraFormat::kKohya);
  ASSERT_EQ(kohya.size(), 6u);
  EXPECT_EQ(kohya[0].first, "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight");
  EXPECT_EQ(kohya[2].first, "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.alpha");
  EXPECT_EQ(kohya[2].second.item<float>(), 8.0f);
  EXPECT_EQ(kohya[3].first, "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight");
  EXPECT_EQ(kohya[1].second.sum().item<float>(), 64.0f);  // up unscaled
  const auto diffusers = model::lora_file_tensors({unet, te}, model::LoraFormat::kDiffusers);
  EXPECT_EQ(diffusers[1].first, "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.lora.up.weight");
  EXPECT_EQ(diffusers[1].second.sum().item<float>(), 128.0f);  // alpha / rank = 2 folded in
  EXPECT_EQ(diffusers[3].first, "text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora_linear_layer.up.weight");
}
