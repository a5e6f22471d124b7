// Checkpoints end to end through the real binary: stop (preemption signal) and resume gives
// the same bits as an uninterrupted run, on one rank and on two; what must match is checked;
// a damaged newest checkpoint falls back to the previous one; export and inspect.
#include "sdxl_dreambooth/data/image_decoder.h"
#include "sdxl_dreambooth/io/safetensors.h"
#include "sdxl_dreambooth/train/checkpoint_dir.h"
#include "sdxl_dreambooth/train/checkpoint_file.h"
#include "support/process.h"
#include "support/reference.h"

#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

using namespace sdxl;
namespace fs = std::filesystem;

namespace {

std::string config(const fs::path& out, const std::string& train_extra, const std::string& more = "") {
  std::ostringstream s;
  s << "[model]\npretrained = \"" << (test::reference_dir() / "tiny-sdxl").string() << "\"\n"
    << "[data]\ninstance_dir = \"" << (test::subjects_dir() / "chelsea").string() << "\"\n"
    << "instance_prompt = \"a photo of sks cat\"\nresolution = 64\ncenter_crop = true\n"
    << "[train]\nseed = 0\nlearning_rate = 1e-3\n" << train_extra << "\n"
    << "[output]\ndir = \"" << out.string() << "\"\n[logging]\nevery_steps = 1\n" << more;
  return s.str();
}

std::vector<std::string> loss_column(const fs::path& csv) {
  std::ifstream in(csv);
  std::vector<std::string> out;
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line)) {
    const auto a = line.find(',');
    out.push_back(line.substr(0, line.find(',', a + 1)));  // "step,loss" exactly as printed
  }
  return out;
}

// Every adapter weight, AdamW moment and step count bitwise equal.
void expect_same_training_state(const fs::path& a, const fs::path& b) {
  const auto x = train::read_checkpoint_file(a.string());
  const auto y = train::read_checkpoint_file(b.string());
  EXPECT_EQ(x.state.step, y.state.step);
  ASSERT_EQ(x.adapters.size(), y.adapters.size());
  for (std::size_t m = 0; m < x.adapters.size(); ++m) {
    EXPECT_EQ(x.adapters[m].optimizer_steps, y.adapters[m].optimizer_steps);
    ASSERT_EQ(x.adapters[m].params.size(), y.adapters[m].params.size());
    for (std::size_t i = 0; i < x.adapters[m].params.size(); ++i) {
      const auto& p = x.adapters[m].params[i];
      const auto& q = y.adapters[m].params[i];
      ASSERT_EQ(p.module + p.half, q.module + q.half);
      EXPECT_TRUE(torch::equal(p.weight, q.weight)) << p.module << "/" << p.half;
      ASSERT_EQ(p.state.size(), q.state.size());
      for (const auto& [name, t] : p.state) {
        EXPECT_TRUE(torch::equal(t, q.state.at(name))) << p.module << "/" << p.half << "/" << name;
      }
    }
  }
}


}  // namespace

TEST(Resume, PreemptedRunResumesToTheSameBits) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  const std::string cfg = config(dir / "out", "batch_size = 2\nmax_steps = 8\n",
                                 "[checkpoint]\nevery_steps = 3\nkeep_last = 2\n"
                                 "[validation]\nprompts = [\"sks cat\"]\nnum_images = 1\nsteps = 2\nevery_steps = 4\n");
  test::write_file(dir / "straight.toml", cfg);
  test::write_file(dir / "stopped.toml", config(dir / "out2", "batch_size = 2\nmax_steps = 8\n",
                                                "[checkpoint]\nevery_steps = 3\nkeep_last = 2\n"
                                                "[validation]\nprompts = [\"sks cat\"]\nnum_images = 1\nsteps = 2\n"
                                                "every_steps = 4\n"));
  const auto straight = test::run_cli({"train", (dir / "straight.toml").string()});
  ASSERT_EQ(straight.exit_code, 0) << straight.err;
  // every_steps = 3 with keep_last = 2: 3 was pruned after 6 was committed; 8 is the end.
  EXPECT_FALSE(fs::exists(dir / "out" / "checkpoints" / "checkpoint-3.h5"));
  EXPECT_TRUE(fs::exists(dir / "out" / "checkpoints" / "checkpoint-6.h5"));
  EXPECT_TRUE(fs::exists(dir / "out" / "checkpoints" / "checkpoint-8.h5"));

  // SIGUSR1 arrives during step 5 (the real handler): checkpoint 5, exit 75, no final LoRA.
  const auto stopped = test::run_cli({"train", (dir / "stopped.toml").string()}, {{"SDXL_TEST_FAULT", "signal:0:5"}});
  ASSERT_EQ(stopped.exit_code, 75) << stopped.err;
  EXPECT_NE(stopped.err.find("preemption requested (User defined signal 1): checkpointing step 5"), std::string::npos)
      << stopped.err;
  EXPECT_TRUE(fs::exists(dir / "out2" / "checkpoints" / "checkpoint-5.h5"));
  EXPECT_FALSE(fs::exists(dir / "out2" / "pytorch_lora_weights.safetensors"));

  // Rerunning without resume would overwrite: refused.
  const auto again = test::run_cli({"train", (dir / "stopped.toml").string()});
  EXPECT_EQ(again.exit_code, 2);
  EXPECT_NE(again.err.find("already holds checkpoint-5.h5"), std::string::npos) << again.err;

  const auto resumed =
      test::run_cli({"train", (dir / "stopped.toml").string(), "--set", "checkpoint.resume=\"latest\""});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("checkpoint-5.h5 at step 5"), std::string::npos) << resumed.err;
  EXPECT_EQ(test::read_file(dir / "out" / "pytorch_lora_weights.safetensors"),
            test::read_file(dir / "out2" / "pytorch_lora_weights.safetensors"));
  expect_same_training_state(dir / "out" / "checkpoints" / "checkpoint-8.h5",
                             dir / "out2" / "checkpoints" / "checkpoint-8.h5");
  EXPECT_EQ(loss_column(dir / "out" / "metrics.csv"), loss_column(dir / "out2" / "metrics.csv"));
  EXPECT_EQ(loss_column(dir / "out2" / "metrics.csv").size(), 8u);

  // What the final checkpoint holds, as inspect shows it.
  const std::string ck = (dir / "out2" / "checkpoints" / "checkpoint-8.h5").string();
  const auto info = test::run_cli({"inspect", ck});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("step:        8 of 8"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("unet: 224 adapters, rank 4"), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("/samples/step_8: 1 image(s) of 'sks cat'"), std::string::npos) << info.out;
  const auto js = test::run_cli({"inspect", ck, "--json"});
  ASSERT_EQ(js.exit_code, 0) << js.err;
  const auto j = nlohmann::json::parse(js.out);
  EXPECT_EQ(j["state"]["step"], 8);
  EXPECT_EQ(j["metrics"]["steps"], 8);
  EXPECT_GT(j["lora_parameters"].get<std::int64_t>(), 0);
  EXPECT_EQ(j["base_model"]["files"].size(), 4u);
}

TEST(Resume, WhatMustMatchIsCheckedAndADamagedNewestFallsBack) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  test::write_file(dir / "run.toml", config(dir / "out", "batch_size = 1\nmax_steps = 2\n"));
  const std::string run = (dir / "run.toml").string();
  ASSERT_EQ(test::run_cli({"train", run}).exit_code, 0);
  const std::string latest = "checkpoint.resume=\"latest\"";

  const auto rank = test::run_cli({"train", run, "--set", latest, "--set", "lora.rank=8"});
  EXPECT_EQ(rank.exit_code, 2);
  EXPECT_NE(rank.err.find("/lora/unet has rank 4, the config asks for lora.rank = 8"), std::string::npos) << rank.err;

  const auto te = test::run_cli({"train", run, "--set", latest, "--set", "lora.train_text_encoder=true"});
  EXPECT_EQ(te.exit_code, 2);
  EXPECT_NE(te.err.find("holds LoRA adapters for [unet], this run trains [unet, text_encoder, text_encoder_2]"),
            std::string::npos)
      << te.err;

  // Another base model: the tiny pipeline with one text-encoder weight changed.
  const fs::path tiny = test::reference_dir() / "tiny-sdxl";
  const fs::path other = dir / "other-sdxl";
  fs::create_directories(other / "text_encoder");
  for (const auto& e : fs::directory_iterator(tiny)) {
    if (e.path().filename() != "text_encoder") fs::create_symlink(e.path(), other / e.path().filename());
  }
  for (const auto& e : fs::directory_iterator(tiny / "text_encoder")) {
    if (e.path().extension() == ".safetensors") {
      std::string bytes = test::read_file(e.path());
      bytes[bytes.size() - 2] ^= 0x01;  // the last float's low mantissa bits
      test::write_file(other / "text_encoder" / e.path().filename(), bytes);
    } else {
      fs::create_symlink(e.path(), other / "text_encoder" / e.path().filename());
    }
  }
  const auto model =
      test::run_cli({"train", run, "--set", latest, "--set", "model.pretrained=\"" + other.string() + "\""});
  EXPECT_EQ(model.exit_code, 2);
  EXPECT_NE(model.err.find("was trained on another base model"), std::string::npos) << model.err;
  EXPECT_NE(model.err.find("text_encoder/model.safetensors differs"), std::string::npos) << model.err;

  // A path that is not a checkpoint.
  test::write_file(dir / "broken.h5", test::read_file(dir / "out" / "checkpoints" / "checkpoint-2.h5").substr(0, 4000));
  const auto broken =
      test::run_cli({"train", run, "--set", "checkpoint.resume=\"" + (dir / "broken.h5").string() + "\""});
  EXPECT_EQ(broken.exit_code, 1);
  EXPECT_NE(broken.err.find("broken.h5: not a readable HDF5 file"), std::string::npos) << broken.err;

  // "latest" whose newest file is damaged: reported, and the one before it is used.
  test::write_file(dir / "out" / "checkpoints" / "checkpoint-9.h5", "garbage");
  const auto fallback = test::run_cli({"train", run, "--set", latest});
  ASSERT_EQ(fallback.exit_code, 0) << fallback.err;
  EXPECT_NE(fallback.err.find("cannot resume from " + (dir / "out" / "checkpoints" / "checkpoint-9.h5").string()),
            std::string::npos)
      << fallback.err;
  EXPECT_NE(fallback.err.find("nothing to train"), std::string::npos) << fallback.err;
}

TEST(Export, DiffusersAndKohyaFilesLoadToTheSameImage) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  test::write_file(dir / "run.toml", config(dir / "out", "batch_size = 2\nmax_steps = 3\n"));
  ASSERT_EQ(test::run_cli({"train", (dir / "run.toml").string()}).exit_code, 0);
  const std::string ck = (dir / "out" / "checkpoints" / "checkpoint-3.h5").string();

  const auto d = test::run_cli({"export", ck, "--out", (dir / "d.safetensors").string()});
  ASSERT_EQ(d.exit_code, 0) << d.err;
  const auto trained = io::SafetensorsFile::open((dir / "out" / "pytorch_lora_weights.safetensors").string());
  const auto exported = io::SafetensorsFile::open((dir / "d.safetensors").string());
  ASSERT_EQ(exported->tensors().size(), trained->tensors().size());
  for (const auto& t : trained->tensors()) {
    const auto* e = exported->find(t.name);
    ASSERT_NE(e, nullptr) << t.name;
    EXPECT_EQ(e->shape, t.shape);
  }
  EXPECT_EQ(exported->metadata().at("format"), "diffusers");
  EXPECT_EQ(exported->metadata().at("steps"), "3");
  EXPECT_EQ(exported->metadata().at("resolution"), "64");

  const auto k = test::run_cli({"export", ck, "--format", "kohya", "--out", (dir / "k.safetensors").string()});
  ASSERT_EQ(k.exit_code, 0) << k.err;
  const auto kohya = io::SafetensorsFile::open((dir / "k.safetensors").string());
  EXPECT_EQ(kohya->tensors().size(), trained->tensors().size() / 2 * 3);  // + one alpha per adapter
  EXPECT_NE(kohya->find("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight"), nullptr);
  EXPECT_NE(kohya->find("lora_unet_middle_block_1_transformer_blocks_0_attn2_to_out_0.alpha"), nullptr);
  EXPECT_EQ(kohya->metadata().at("ss_network_dim"), "4");
  // train wrote the same kohya file itself, named after the run, with kohya's ss_* metadata.
  const auto own = io::SafetensorsFile::open((dir / "out" / "out.safetensors").string());
  ASSERT_EQ(own->tensors().size(), kohya->tensors().size());
  for (const auto& t : kohya->tensors()) {
    const auto* o = own->find(t.name);
    ASSERT_NE(o, nullptr) << t.name;
    const auto bytes = [](const io::SafetensorsFile& f, const io::TensorInfo& i) {
      return std::string(reinterpret_cast<const char*>(f.data(i)), i.end - i.begin);
    };
    EXPECT_EQ(bytes(*own, *o), bytes(*kohya, t)) << t.name;
  }
  for (const auto& [key, value] : std::map<std::string, std::string>{{"ss_output_name", "out"},
                                                                     {"ss_base_model_version", "sdxl_base_v1-0"},
                                                                     {"ss_network_module", "networks.lora"},
                                                                     {"ss_resolution", "(64, 64)"},
                                                                     {"ss_enable_bucket", "False"},
                                                                     {"ss_bucket_info",
                                                                      R"({"buckets":{"0":{"count":5,"resolution":[64,64]}}})"},
                                                                     {"ss_steps", "3"},
                                                                     {"ss_num_train_images", "5"},
                                                                     {"format", "kohya"}}) {
    EXPECT_EQ(own->metadata().at(key), value) << key;
  }
  EXPECT_EQ(trained->metadata().at("instance_prompt"), "a photo of sks cat");

  const auto exists = test::run_cli({"export", ck, "--out", (dir / "k.safetensors").string()});
  EXPECT_EQ(exists.exit_code, 2);
  EXPECT_NE(exists.err.find("already exists"), std::string::npos) << exists.err;
  const auto bad = test::run_cli({"export", ck, "--format", "ckpt", "--out", (dir / "x.safetensors").string()});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("--format: expected \"diffusers\" or \"kohya\", got ckpt"), std::string::npos) << bad.err;

  // Both files, applied by generate, give the same picture.
  auto generate = [&](const std::string& lora, const std::string& out) {
    const auto g = test::run_cli({"generate", "--model", (test::reference_dir() / "tiny-sdxl").string(), "--prompt",
                                  "sks cat", "--size", "64x64", "--steps", "2", "--seed", "3", "--out",
                                  (dir / out).string(), "--lora", lora});
    EXPECT_EQ(g.exit_code, 0) << g.err;
    EXPECT_NE(g.err.find("224 adapters merged with scale 1.0, 0 unused"), std::string::npos) << g.err;
    for (const auto& e : fs::directory_iterator(dir / out)) {
      if (e.path().extension() != ".png") continue;  // the folder's lock file
      return data::decode_image_file(e.path().string()).image.pixels;
    }
    return std::vector<std::uint8_t>{};
  };
  const auto a = generate((dir / "d.safetensors").string(), "gen-d");
  const auto b = generate((dir / "k.safetensors").string(), "gen-k");
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(a, b);
}

// A 2-rank run signalled from outside (SIGUSR1 to mpirun, which forwards it to both ranks),
// resumed, ends with the bits of an uninterrupted 2-rank run; resuming on 1 rank works with
// a warning.
TEST(DistributedResume, SignalledTwoRankRunResumesBitwise) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  const std::string train = "batch_size = 1\nmax_steps = 12\n";
  test::write_file(dir / "a.toml", config(dir / "a", train));
  test::write_file(dir / "b.toml", config(dir / "b", train));
  const auto straight = test::run_mpirun(2, {"train", (dir / "a.toml").string()});
  ASSERT_EQ(straight.exit_code, 0) << straight.err;

  // Start, wait until a few steps are logged, signal mpirun.
  const fs::path log = dir / "b.log";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    setenv("OMP_NUM_THREADS", "1", 1);
    execl(SDXL_MPIEXEC, SDXL_MPIEXEC, "--allow-run-as-root", "--oversubscribe", "-np", "2", SDXL_BINARY, "train",
          (dir / "b.toml").c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (test::count_lines(dir / "b" / "metrics.csv") < 4 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid, SIGUSR1);
  int status = 0;
  waitpid(pid, &status, 0);
  const std::string err = test::read_file(log);
  ASSERT_TRUE(WIFEXITED(status)) << err;
  ASSERT_EQ(WEXITSTATUS(status), 75) << err;
  EXPECT_NE(err.find("preemption requested"), std::string::npos) << err;
  const auto checkpoints = train::list_checkpoints(dir / "b" / "checkpoints");
  ASSERT_EQ(checkpoints.size(), 1u) << err;
  const std::int64_t stopped_at = checkpoints[0].step;
  EXPECT_GE(stopped_at, 3);
  EXPECT_LT(stopped_at, 12) << "the signal came too late to test anything";
  fs::copy(dir / "b", dir / "c", fs::copy_options::recursive);

  const auto resumed =
      test::run_mpirun(2, {"train", (dir / "b.toml").string(), "--set", "checkpoint.resume=\"latest\""});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(test::read_file(dir / "a" / "pytorch_lora_weights.safetensors"),
            test::read_file(dir / "b" / "pytorch_lora_weights.safetensors"));
  expect_same_training_state(dir / "a" / "checkpoints" / "checkpoint-12.h5",
                             dir / "b" / "checkpoints" / "checkpoint-12.h5");

  // The same checkpoint continued on one rank: allowed, with a warning (not bitwise).
  const auto one = test::run_cli({"train", (dir / "b.toml").string(), "--set", "checkpoint.resume=\"latest\"",
                                  "--set", "output.dir=\"" + (dir / "c").string() + "\""});
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_NE(one.err.find("written by 2 rank(s), this job has 1"), std::string::npos) << one.err;
  EXPECT_TRUE(fs::exists(dir / "c" / "checkpoints" / "checkpoint-12.h5"));
  // Another output folder is no change of what a step computes; a new learning rate and
  // resolution are, and are named.
  EXPECT_EQ(one.err.find("settings other than"), std::string::npos) << one.err;
  fs::copy(dir / "b", dir / "d", fs::copy_options::recursive);
  const auto changed = test::run_cli({"train", (dir / "b.toml").string(), "--set", "checkpoint.resume=\"latest\"",
                                      "--set", "output.dir=\"" + (dir / "d").string() + "\"", "--set",
                                      "train.learning_rate=2e-3", "--set", "data.resolution=32"});
  ASSERT_EQ(changed.exit_code, 0) << changed.err;
  EXPECT_NE(changed.err.find("with settings other than its run's: data.resolution (64 → 32), "
                             "train.learning_rate (0.001 → 0.002); training continues, but where they change what a "
                             "step computes, not as that run would have (not bitwise reproducible)"),
            std::string::npos)
      << changed.err;
}

// jobs/train-mpirun.sh (clusters without Slurm): a preemption on one rank ends the run with 75,
// the script's loop resumes it from the checkpoint, and the result is the uninterrupted run's.
// The flag set on rank 1 alone reaches rank 0 through the gradient all-reduce.
TEST(Jobs, TrainMpirunResumesAPreemptedRun) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  const std::string train = "batch_size = 1\nmax_steps = 8\n";
  test::write_file(dir / "a.toml", config(dir / "a", train));
  test::write_file(dir / "b.toml", config(dir / "b", train));
  const auto straight = test::run_mpirun(2, {"train", (dir / "a.toml").string()});
  ASSERT_EQ(straight.exit_code, 0) << straight.err;

  const auto r = test::run_process({"bash", std::string(SDXL_SOURCE_DIR) + "/jobs/train-mpirun.sh", (dir / "b.toml").string()},
                                   {{"NP", "2"},
                                    {"SDXL_BIN", SDXL_BINARY},
                                    {"MPIRUN_ARGS", "--oversubscribe -x SDXL_TEST_FAULT"},
                                    {"SDXL_TEST_FAULT", "signal:1:4"},
                                    {"SDXL_STATUS_DIR", dir.path().string()}});
  const std::string log = r.out + r.err;
  ASSERT_EQ(r.exit_code, 0) << log;
  EXPECT_NE(log.find("preemption requested (another rank): checkpointing step 4"), std::string::npos) << log;
  EXPECT_NE(log.find("train-mpirun.sh: preempted after a checkpoint; resuming (restart 1)"), std::string::npos) << log;
  EXPECT_NE(log.find("checkpoint-4.h5 at step 4"), std::string::npos) << log;
  EXPECT_EQ(test::read_file(dir / "a" / "pytorch_lora_weights.safetensors"),
            test::read_file(dir / "b" / "pytorch_lora_weights.safetensors"));
  expect_same_training_state(dir / "a" / "checkpoints" / "checkpoint-8.h5",
                             dir / "b" / "checkpoints" / "checkpoint-8.h5");
}

// SIGTERM to jobs/train-mpirun.sh's whole process group (a scheduler's stop, or Ctrl-C): the
// script forwards it to mpirun once (mpirun runs in a session of its own; a second signal
// would make it abort the ranks), the ranks checkpoint and exit 75; mpirun itself then exits 1,
// but the script reports the program's 75 (read from its status file) so an outer scheduler
// requeues, and leaves no status file behind. Started with SIGTERM blocked (a launcher's mask,
// which bash keeps): the script unblocks it, or it would never see the stop.
TEST(Jobs, TrainMpirunReportsThePreemptionExitWhenTerminated) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  test::write_file(dir / "run.toml", config(dir / "out", "batch_size = 1\nmax_steps = 100000\n"));
  const std::string script = std::string(SDXL_SOURCE_DIR) + "/jobs/train-mpirun.sh";
  // Started in the background, signalled once two steps are logged.
  const auto r = test::run_process(
      {"bash", "-c",
       "setsid perl -MPOSIX -e 'sigprocmask(SIG_BLOCK, POSIX::SigSet->new(SIGTERM)); exec @ARGV' bash \"$0\" \"$1\" & "
       "p=$!; for i in $(seq 1200); do [ -f \"$2\" ] && [ \"$(wc -l < \"$2\")\" -ge 3 ] && "
       "break; sleep 0.1; done; kill -TERM -- -$p; wait $p",
       script, (dir / "run.toml").string(), (dir / "out" / "metrics.csv").string()},
      {{"NP", "2"}, {"SDXL_BIN", SDXL_BINARY}, {"MPIRUN_ARGS", "--oversubscribe"},
       {"SDXL_STATUS_DIR", dir.path().string()}});
  const std::string log = r.out + r.err;
  EXPECT_EQ(r.exit_code, 75) << log;
  EXPECT_NE(log.find("preemption requested (Terminated): checkpointing step"), std::string::npos) << log;
  EXPECT_EQ(log.find("resuming (restart"), std::string::npos) << log;  // a stop, not a restart
  std::size_t checkpoints = 0;
  for (const auto& e : fs::directory_iterator(dir / "out" / "checkpoints")) checkpoints += e.path().extension() == ".h5";
  EXPECT_EQ(checkpoints, 1u);
  for (const auto& e : fs::directory_iterator(dir.path())) {
    EXPECT_EQ(e.path().filename().string().find(".sdxl-dreambooth-mpirun-"), std::string::npos) << e.path();
  }
}
