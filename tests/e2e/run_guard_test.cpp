// A run's outputs are its own: one run per output folder (a lock that dies with its holder,
// or an O_EXCL lock file where flock is missing), a run refused as a configuration error
// (exit 2) writes nothing at all, a preemption request during start-up exits 75 at once, and
// export never overwrites the checkpoint it reads.
#include "sdxl_dreambooth/train/checkpoint_file.h"
#include "support/process.h"
#include "support/reference.h"

#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

using namespace sdxl;
namespace fs = std::filesystem;

namespace {

std::string q(const fs::path& p) { return "\"" + p.string() + "\""; }

std::string config(const fs::path& out, const std::string& train_extra = "", const std::string& more = "") {
  std::ostringstream s;
  s << "[model]\npretrained = " << q(test::reference_dir() / "tiny-sdxl") << "\n"
    << "[data]\ninstance_dir = " << q(test::subjects_dir() / "chelsea") << "\n"
    << "instance_prompt = \"a photo of sks cat\"\nresolution = 64\ncenter_crop = true\n"
    << "[train]\nseed = 0\nbatch_size = 1\n" << train_extra << "\n"
    << "[checkpoint]\nevery_steps = 2\n"
    << "[output]\ndir = " << q(out) << "\n" << more;
  return s.str();
}

// Every file under `dir` with its content: what "nothing was touched" compares.
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> files;
  if (!fs::exists(dir)) return files;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    // Contents and modification times: a refused run touches neither.
    if (e.is_regular_file()) {
      files[fs::relative(e.path(), dir).string()] =
          test::read_file(e.path()) + "\nmtime " + std::to_string(fs::last_write_time(e.path()).time_since_epoch().count());
    }
  }
  return files;
}

// The pid a lock file names, once it names one (0 after `seconds`).
long wait_for_holder(const fs::path& lock, double seconds) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < until) {
    std::ifstream in(lock);
    std::string token;
    while (in >> token) {
      if (token.rfind("pid=", 0) == 0) return std::stol(token.substr(4));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return 0;
}

// `sdxl-dreambooth version` says so on a machine (or build) without a usable GPU.
bool torch_sees_no_gpu() {
  return test::run_cli({"version"}).out.find("CUDA:      no device visible") != std::string::npos;
}

void wait_for_file(const fs::path& path, double seconds) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!fs::exists(path) && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

class SecondRun : public ::testing::TestWithParam<std::string> {};

// A run stalled at step 5 holds its folder; a second run fails at once, exit 2, naming the
// folder and the holder's pid, and changes nothing; once the holder is killed (SIGKILL: no
// clean-up) the folder's next run resumes.
TEST_P(SecondRun, FailsAtOnceNamingTheHolderAndTheNextRunAfterItsDeathResumes) {
  SDXL_REQUIRE_REFERENCE();
  const std::string mode = GetParam();
  const std::string lock_name = mode == "flock" ? ".sdxl-dreambooth.lock" : ".sdxl-dreambooth.lock.held";
  std::map<std::string, std::string> env{{"SDXL_TEST_LOCK", mode}};
  test::TempDir dir;
  const fs::path out = dir / "out";
  test::write_file(dir / "run.toml", config(out, "max_steps = 8\n"));
  test::ProcessResult first;
  auto stall_env = env;
  stall_env["SDXL_TEST_FAULT"] = "stall:0:5";
  // checkpoint.dir outside output.dir: both folders are held.
  const std::string ck = "checkpoint.dir=\"" + (dir / "ck").string() + "\"";
  std::thread holder([&] { first = test::run_cli({"train", (dir / "run.toml").string(), "--set", ck}, stall_env); });
  const long pid = wait_for_holder(out / lock_name, 120);
  ASSERT_GT(pid, 0) << "the first run never locked " << out;
  wait_for_file(dir / "ck" / "checkpoint-4.h5", 120);
  std::this_thread::sleep_for(std::chrono::seconds(1));  // its step 5 is where it stalls
  const auto before = snapshot(out);

  const auto second = test::run_cli(
      {"train", (dir / "run.toml").string(), "--set", "checkpoint.resume=\"latest\"", "--set", ck}, env);
  EXPECT_EQ(second.exit_code, 2) << second.err;
  EXPECT_NE(second.err.find("output.dir: '" + out.string() + "' is in use by another run"), std::string::npos)
      << second.err;
  EXPECT_NE(second.err.find("pid " + std::to_string(pid)), std::string::npos) << second.err;
  EXPECT_EQ(snapshot(out), before) << "the refused run changed the folder";
  // Another output.dir, the same checkpoint.dir: refused too, and its own folder not left behind.
  const auto shared = test::run_cli({"train", (dir / "run.toml").string(), "--set", "checkpoint.resume=\"latest\"",
                                     "--set", ck, "--set", "output.dir=\"" + (dir / "other").string() + "\""},
                                    env);
  EXPECT_EQ(shared.exit_code, 2) << shared.err;
  EXPECT_NE(shared.err.find("checkpoint.dir: '" + (dir / "ck").string() + "' is in use by another run"),
            std::string::npos)
      << shared.err;
  EXPECT_FALSE(fs::exists(dir / "other"));

  ::kill(static_cast<pid_t>(pid), SIGKILL);
  holder.join();
  EXPECT_EQ(first.exit_code, 128 + SIGKILL);
  const auto third = test::run_cli(
      {"train", (dir / "run.toml").string(), "--set", "checkpoint.resume=\"latest\"", "--set", ck}, env);
  EXPECT_EQ(third.exit_code, 0) << third.err;
  EXPECT_NE(third.err.find("resumed from"), std::string::npos) << third.err;
  EXPECT_TRUE(fs::exists(out / "pytorch_lora_weights.safetensors"));
  // The O_EXCL file goes with its run; the flock file stays (removing it would race).
  EXPECT_EQ(fs::exists(out / lock_name), mode == "flock");
}

INSTANTIATE_TEST_SUITE_P(LockModes, SecondRun, ::testing::Values("flock", "exclusive-file"));

// Each refused run exits 2 naming the key, and leaves an existing run's folder byte for byte
// as it was (a fresh output.dir is not even created).
TEST(RunGuard, ARefusedRunWritesNothing) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  const fs::path out = dir / "out";
  test::write_file(dir / "run.toml", config(out, "max_steps = 2\n"));
  ASSERT_EQ(test::run_cli({"train", (dir / "run.toml").string()}).exit_code, 0);
  const auto before = snapshot(out);
  fs::create_directories(dir / "a-folder");
  fs::create_directories(dir / "broken");
  test::write_file(dir / "broken" / "x.png", "not a png");
  test::write_file(dir / "a-file", "keep me");
  const std::string resume_latest = "checkpoint.resume=\"latest\"";
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases{
      {{resume_latest, "data.instance_dir=\"/nonexistent\""}, "data.instance_dir: folder '/nonexistent' does not exist"},
      {{"model.pretrained=\"/nonexistent-model\""}, "model.pretrained: model '/nonexistent-model' not found"},
      {{"checkpoint.resume=\"lates\""}, "checkpoint.resume: 'lates' is neither"},
      {{"checkpoint.resume=\"" + (dir / "a-folder").string() + "\""}, "is a folder"},
      {{"checkpoint.resume=\"" + (dir / "gone.h5").string() + "\""}, "checkpoint.resume:"},
      {{"output.dir=\"" + (dir / "a-file").string() + "\""}, "output.dir: '" + (dir / "a-file").string() + "' is not a folder"},
      {{resume_latest, "data.instance_dir=\"" + (dir / "broken").string() + "\"", "data.skip_bad_images=true"},
       "no usable image"},
      {{"checkpoint.resume=\"none\""}, "already holds"},
      {{resume_latest, "train.batch_size=6"}, "train.batch_size = 6 exceeds the 5 training examples"},
  };
  for (const auto& [sets, message] : cases) {
    std::vector<std::string> args{"train", (dir / "run.toml").string()};
    for (const auto& s : sets) {
      args.push_back("--set");
      args.push_back(s);
    }
    const auto r = test::run_cli(args);
    EXPECT_EQ(r.exit_code, 2) << sets.back() << "\n" << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << sets.back() << "\n" << r.err;
    EXPECT_EQ(snapshot(out), before) << sets.back() << " changed the run's folder";
    EXPECT_EQ(test::read_file(dir / "a-file"), "keep me");
    // The same, into a folder that does not exist yet: it is not created.
    args.push_back("--set");
    args.push_back("output.dir=\"" + (dir / "fresh" / "out").string() + "\"");
    if (message.find("output.dir") != std::string::npos || message.find("already holds") != std::string::npos) continue;
    const auto fresh = test::run_cli(args);
    EXPECT_EQ(fresh.exit_code, 2) << sets.back() << "\n" << fresh.err;
    EXPECT_FALSE(fs::exists(dir / "fresh")) << sets.back() << " created the fresh output.dir";
  }
}

// TensorBoard's folder (output.dir/logs) must be one this run can write: checked before
// anything is written, like output.dir itself.
TEST(RunGuard, AnUnwritableTensorBoardFolderIsAConfigError) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  const fs::path out = dir / "out";
  test::write_file(dir / "run.toml", config(out, "max_steps = 2\n"));
  fs::create_directories(out);
  test::write_file(out / "logs", "not a folder");
  const auto r = test::run_cli({"train", (dir / "run.toml").string()});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("logging.tensorboard: '" + (out / "logs").string() + "' is not a folder"), std::string::npos)
      << r.err;
  EXPECT_EQ(std::distance(fs::directory_iterator(out), fs::directory_iterator()), 1);
  const auto off = test::run_cli({"train", (dir / "run.toml").string(), "--set", "logging.tensorboard=false"});
  EXPECT_EQ(off.exit_code, 0) << off.err;
}

// A micro-batch that cannot fit the device even by a lower bound of its memory is refused
// before anything is encoded or written (exit 2), not killed by the OOM killer later.
TEST(RunGuard, AStepThatCannotFitIsRefusedBeforeTraining) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  test::write_file(dir / "run.toml", config(dir / "out", "max_steps = 2\n"));
  const auto r = test::run_cli({"train", (dir / "run.toml").string(), "--set", "train.batch_size=4096", "--set",
                                "data.repeats=1000", "--set", "data.resolution=1024"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("train.batch_size = 4096: one micro-batch (4096 UNet rows at 1024 px) needs at least"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("more than this rank's host has"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "out"));
  // Without data.cache_dir every rank holds every example's latents: refused when they cannot fit.
  const auto held = test::run_cli({"train", (dir / "run.toml").string(), "--set", "data.repeats=100000", "--set",
                                   "data.resolution=1024"});
  EXPECT_EQ(held.exit_code, 2) << held.err;
  EXPECT_NE(held.err.find("500000 examples (images x repeats) at 1024 px hold"), std::string::npos) << held.err;
  EXPECT_NE(held.err.find("set data.cache_dir"), std::string::npos) << held.err;
  EXPECT_FALSE(fs::exists(dir / "out"));
  // The same at a batch that fits trains.
  EXPECT_EQ(test::run_cli({"train", (dir / "run.toml").string()}).exit_code, 0);
}

// SIGUSR1 at the very start (the fault hook at step 0, through the real handler): exit 75 at
// the first phase boundary, no step, no checkpoint, no LoRA.
TEST(RunGuard, APreemptionRequestDuringStartUpExits75WithNothingToSave) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  test::write_file(dir / "run.toml", config(dir / "out", "max_steps = 4\n"));
  const auto r = test::run_cli({"train", (dir / "run.toml").string()}, {{"SDXL_TEST_FAULT", "signal:0:0"}});
  EXPECT_EQ(r.exit_code, 75) << r.err;
  EXPECT_NE(r.err.find("before the first step"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir / "out" / "checkpoints"));
  EXPECT_FALSE(fs::exists(dir / "out" / "pytorch_lora_weights.safetensors"));

  // Earlier still: while the libraries initialize, before main (the preinit hook's handler).
  const auto loading = test::run_cli({"train", (dir / "run.toml").string()}, {{"SDXL_TEST_FAULT", "signal:load"}});
  EXPECT_EQ(loading.exit_code, 75) << loading.err;
  EXPECT_NE(loading.err.find("preemption requested (User defined signal 1) before the first step"), std::string::npos)
      << loading.err;
  EXPECT_FALSE(fs::exists(dir / "out" / "checkpoints"));

  // A SIGTERM already pending when the program starts, from a launcher that blocked it: the
  // program unblocks its preemption signals and hears it (blocked, it would train to the end).
  sigset_t term, previous;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &term, &previous), 0);
  const auto pending = test::run_process(
      {"/bin/sh", "-c", "kill -TERM $$; exec \"$0\" train \"$1\"", SDXL_BINARY, (dir / "run.toml").string()});
  ASSERT_EQ(pthread_sigmask(SIG_SETMASK, &previous, nullptr), 0);
  EXPECT_EQ(pending.exit_code, 75) << pending.err;
  EXPECT_NE(pending.err.find("preemption requested (Terminated) before the first step"), std::string::npos)
      << pending.err;
  EXPECT_FALSE(fs::exists(dir / "out" / "pytorch_lora_weights.safetensors"));
}

// A preemption request is heard inside the long phases too, not only at step ends: between
// the micro-batches of an accumulated step (the step is given up and the one before is
// checkpointed; the resumed run ends with the straight run's bits), while the images are
// encoded (exit 75 at once), and during a validation (cut short; the next step boundary
// checkpoints).
TEST(RunGuard, APreemptionRequestIsHeardInsideLongPhases) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  const std::string accumulated = "max_steps = 4\ngrad_accum = 2\n";
  test::write_file(dir / "straight.toml", config(dir / "straight", accumulated));
  test::write_file(dir / "stopped.toml", config(dir / "stopped", accumulated));
  ASSERT_EQ(test::run_cli({"train", (dir / "straight.toml").string()}).exit_code, 0);
  const auto stopped = test::run_cli({"train", (dir / "stopped.toml").string()}, {{"SDXL_TEST_FAULT", "signal:0:3"}});
  EXPECT_EQ(stopped.exit_code, 75) << stopped.err;
  EXPECT_NE(stopped.err.find("preemption requested during step 3: the step is given up"), std::string::npos)
      << stopped.err;
  EXPECT_TRUE(fs::exists(dir / "stopped" / "checkpoints" / "checkpoint-2.h5"));
  EXPECT_FALSE(fs::exists(dir / "stopped" / "checkpoints" / "checkpoint-3.h5"));
  const auto resumed =
      test::run_cli({"train", (dir / "stopped.toml").string(), "--set", "checkpoint.resume=\"latest\""});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(test::read_file(dir / "straight" / "pytorch_lora_weights.safetensors"),
            test::read_file(dir / "stopped" / "pytorch_lora_weights.safetensors"));
  // In the first step of a run: nothing trained, nothing to checkpoint.
  const auto first = test::run_cli({"train", (dir / "straight.toml").string(), "--set",
                                    "output.dir=\"" + (dir / "first").string() + "\""},
                                   {{"SDXL_TEST_FAULT", "signal:0:1"}});
  EXPECT_EQ(first.exit_code, 75) << first.err;
  EXPECT_NE(first.err.find("before this run finished a step"), std::string::npos) << first.err;
  EXPECT_FALSE(fs::exists(dir / "first" / "checkpoints"));

  // While encoding: before the images are gathered and counted.
  const auto encoding = test::run_cli({"train", (dir / "straight.toml").string(), "--set",
                                       "output.dir=\"" + (dir / "encoding").string() + "\""},
                                      {{"SDXL_TEST_FAULT", "signal:0:-1"}});
  EXPECT_EQ(encoding.exit_code, 75) << encoding.err;
  EXPECT_NE(encoding.err.find("before the first step"), std::string::npos) << encoding.err;
  EXPECT_EQ(encoding.err.find("examples encoded"), std::string::npos) << encoding.err;

  // During a validation at step 1: cut short, then the checkpoint of step 2 and exit 75.
  test::write_file(dir / "validate.toml",
                   config(dir / "validate", "max_steps = 4\n",
                          "[validation]\nprompts = [\"sks cat\"]\nnum_images = 2\nsteps = 3\nevery_steps = 1\n"
                          "resolution = 64\n"));
  const auto validating =
      test::run_cli({"train", (dir / "validate.toml").string()}, {{"SDXL_TEST_FAULT", "signal:0:-2"}});
  EXPECT_EQ(validating.exit_code, 75) << validating.err;
  EXPECT_NE(validating.err.find("validation at step 1: 0 images"), std::string::npos) << validating.err;
  EXPECT_NE(validating.err.find("cut short by a preemption request"), std::string::npos) << validating.err;
  EXPECT_TRUE(fs::exists(dir / "validate" / "checkpoints" / "checkpoint-2.h5"));
}

// Whatever --force says, export does not write over the checkpoint it reads, under its own
// name or through a link.
TEST(RunGuard, ExportNeverOverwritesItsInput) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  test::write_file(dir / "run.toml", config(dir / "out", "max_steps = 2\n"));
  ASSERT_EQ(test::run_cli({"train", (dir / "run.toml").string()}).exit_code, 0);
  const fs::path ckpt = dir / "out" / "checkpoints" / "checkpoint-2.h5";
  const std::string bytes = test::read_file(ckpt);
  fs::create_symlink(ckpt, dir / "link.h5");
  for (const fs::path& out : {ckpt, dir / "link.h5"}) {
    const auto r = test::run_cli({"export", ckpt.string(), "--out", out.string(), "--force"});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find("is the checkpoint being read"), std::string::npos) << r.err;
    EXPECT_EQ(test::read_file(ckpt), bytes);
  }
  const auto folder = test::run_cli({"export", ckpt.string(), "--out", dir.path().string(), "--force"});
  EXPECT_EQ(folder.exit_code, 2) << folder.err;
  EXPECT_NE(folder.err.find("is a folder"), std::string::npos) << folder.err;
  EXPECT_FALSE(fs::exists(dir.path().string() + ".tmp"));
}

// A flipped bit in the newest checkpoint's adapters: inspect names the damaged dataset, and a
// resume reports it and continues from the checkpoint before.
TEST(RunGuard, ABitFlipInTheNewestCheckpointIsCaughtAndResumeFallsBack) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  test::write_file(dir / "run.toml", config(dir / "out", "max_steps = 4\n"));
  ASSERT_EQ(test::run_cli({"train", (dir / "run.toml").string()}).exit_code, 0);
  const fs::path newest = dir / "out" / "checkpoints" / "checkpoint-4.h5";
  const auto good = test::run_cli({"inspect", newest.string()});
  ASSERT_EQ(good.exit_code, 0) << good.err;
  EXPECT_NE(good.out.find("every one's Fletcher-32 checksum verified"), std::string::npos) << good.out;

  const train::Checkpoint c = train::read_checkpoint_file(newest.string());
  const train::AdapterParam& p = c.adapters.front().params.front();
  const std::string needle(static_cast<const char*>(p.weight.data_ptr()), static_cast<std::size_t>(p.weight.nbytes()));
  std::string bytes = test::read_file(newest);
  const auto at = bytes.find(needle);
  ASSERT_NE(at, std::string::npos);
  bytes[at + 3] = static_cast<char>(bytes[at + 3] ^ 0x40);  // an exponent bit of the first float
  test::write_file(newest, bytes);

  const auto bad = test::run_cli({"inspect", newest.string()});
  EXPECT_EQ(bad.exit_code, 1) << bad.err;
  EXPECT_NE(bad.err.find(p.module), std::string::npos) << bad.err;
  test::write_file(dir / "more.toml", config(dir / "out", "max_steps = 6\n"));
  const auto resumed =
      test::run_cli({"train", (dir / "more.toml").string(), "--set", "checkpoint.resume=\"latest\""});
  EXPECT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("cannot resume from " + newest.string()), std::string::npos) << resumed.err;
  EXPECT_NE(resumed.err.find("resumed from " + (dir / "out" / "checkpoints" / "checkpoint-2.h5").string()),
            std::string::npos)
      << resumed.err;
}

// The disk fills up while a checkpoint is written: exit 1 with one error naming the file and
// the cause (no crash in HDF5's exit handler), no .tmp left, the checkpoint before intact.
TEST(RunGuard, ADiskFullCheckpointEndsTheRunCleanly) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  const fs::path small = dir / "small";
  const test::TmpfsMount mount(small, "size=4m");
  if (!mount.mounted()) GTEST_SKIP() << "cannot mount a 4 MiB tmpfs here: " << mount.error();
  // checkpoint-2 (2.6 MiB) fits, checkpoint-4 does not.
  test::write_file(dir / "run.toml", config(small / "out", "max_steps = 4\n"));
  const auto r = test::run_cli({"train", (dir / "run.toml").string()});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  const fs::path tmp = small / "out" / "checkpoints" / "checkpoint-4.h5.tmp";
  EXPECT_NE(r.err.find(tmp.string()), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("Segmentation"), std::string::npos) << r.err;
  std::size_t errors = 0;
  for (std::size_t at = r.err.find("error: "); at != std::string::npos; at = r.err.find("error: ", at + 1)) ++errors;
  EXPECT_EQ(errors, 1u) << r.err;
  EXPECT_FALSE(fs::exists(tmp));
  EXPECT_NO_THROW(train::read_checkpoint_file((small / "out" / "checkpoints" / "checkpoint-2.h5").string()));
}

// Bytes that are not text, from a caption file or a model given as a file: one usage error
// naming the file, the bytes escaped.
TEST(RunGuard, BinaryCaptionsAndAModelFileAreNamed) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  fs::create_directories(dir / "images");
  fs::copy_file(test::subjects_dir() / "chelsea" / "01.jpg", dir / "images" / "01.jpg");
  test::write_file(dir / "images" / "01.txt", std::string("sks\xff\xfe\x1b[2J cat", 13));
  test::write_file(dir / "run.toml", config(dir / "out", "max_steps = 1\n"));
  const auto r = test::run_cli({"train", (dir / "run.toml").string(), "--set",
                                "data.instance_dir=\"" + (dir / "images").string() + "\"", "--set",
                                "data.caption_ext=\".txt\""});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("data.caption_ext: caption file '" + (dir / "images" / "01.txt").string() +
                       "' is not UTF-8 text: 'sks\\xff\\xfe\\x1b[2J cat'"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find('\x1b'), std::string::npos);
  EXPECT_FALSE(fs::exists(dir / "out"));
  const auto m = test::run_cli({"train", (dir / "run.toml").string(), "--set",
                                "model.pretrained=\"" + (dir / "run.toml").string() + "\""});
  EXPECT_EQ(m.exit_code, 2) << m.err;
  EXPECT_NE(m.err.find("is a file, not a diffusers pipeline folder"), std::string::npos) << m.err;
}

// A tokenizer whose ids run past its text encoder's vocabulary, or are negative: named with
// the file, instead of "index out of range" from inside LibTorch.
TEST(RunGuard, TokenizerIdsOutsideTheTextEncoderAreNamed) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  for (const auto& [id, message] : std::vector<std::pair<std::string, std::string>>{
           {"1000000000", "token id 1000000000 is outside text_encoder_2's vocabulary"},
           {"-1", "token ids are >= 0"}}) {
    const fs::path model = dir / ("model" + id);
    fs::create_directories(model / "tokenizer_2");
    for (const auto& e : fs::directory_iterator(test::reference_dir() / "tiny-sdxl")) {
      if (e.path().filename() != "tokenizer_2") fs::create_symlink(e.path(), model / e.path().filename());
    }
    for (const auto& e : fs::directory_iterator(test::reference_dir() / "tiny-sdxl" / "tokenizer_2")) {
      if (e.path().filename() != "vocab.json") fs::create_symlink(e.path(), model / "tokenizer_2" / e.path().filename());
    }
    std::string vocab = test::read_file(test::reference_dir() / "tiny-sdxl" / "tokenizer_2" / "vocab.json");
    vocab.insert(1, "\"zzzq\u00e9\": " + id + ", ");
    test::write_file(model / "tokenizer_2" / "vocab.json", vocab);
    const auto r = test::run_cli({"generate", "--model", model.string(), "--prompt", "a cat", "--size", "64x64",
                                  "--steps", "1", "--out", (dir / "out").string()});
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
    EXPECT_NE(r.err.find((model / "tokenizer_2" / "vocab.json").string()), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("internal failure"), std::string::npos) << r.err;
    // model-info checks the same, rather than listing the folder as fine.
    const auto info = test::run_cli({"model-info", model.string()});
    EXPECT_NE(info.exit_code, 0) << info.out;
    EXPECT_NE(info.err.find(message), std::string::npos) << info.err;
  }
}

// Accepted, but said: an empty instance prompt, and a prompt CLIP cuts (as diffusers warns).
TEST(RunGuard, EmptyAndOverlongPromptsAreWarnedAbout) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  test::write_file(dir / "run.toml", config(dir / "out", "max_steps = 1\n"));
  const auto empty = test::run_cli({"train", (dir / "run.toml").string(), "--set", "data.instance_prompt=\"\""});
  EXPECT_EQ(empty.exit_code, 0) << empty.err;
  EXPECT_NE(empty.err.find("data.instance_prompt is empty"), std::string::npos) << empty.err;
  std::string words;
  for (int i = 0; i < 90; ++i) words += " sks";
  const auto long_prompt = test::run_cli({"train", (dir / "run.toml").string(), "--set",
                                          "data.instance_prompt=\"a photo of" + words + "\"", "--set",
                                          "output.dir=\"" + (dir / "long").string() + "\""});
  EXPECT_EQ(long_prompt.exit_code, 0) << long_prompt.err;
  EXPECT_NE(long_prompt.err.find("CLIP tokens; only the first 75 are used"), std::string::npos) << long_prompt.err;
}

// A folder given where a checkpoint file is expected, a misplaced generate --out, and CUDA
// asked for where no GPU is visible: each a usage error naming what to give instead.
TEST(RunGuard, MisplacedPathsAndDevicesAreUsageErrors) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  for (const char* command : {"inspect", "export"}) {
    std::vector<std::string> args{command, dir.path().string()};
    if (std::string(command) == "export") args.insert(args.end(), {"--out", (dir / "x.safetensors").string()});
    const auto r = test::run_cli(args);
    EXPECT_EQ(r.exit_code, 2) << command << "\n" << r.err;
    EXPECT_NE(r.err.find("is a folder, not a checkpoint file"), std::string::npos) << r.err;
  }
  // A model folder of links to tiny-sdxl's parts: were the refusal broken, nothing shared is hit.
  const fs::path model = dir / "model";
  fs::create_directories(model);
  for (const auto& e : fs::directory_iterator(test::reference_dir() / "tiny-sdxl")) {
    fs::create_symlink(e.path(), model / e.path().filename());
  }
  const auto g = test::run_cli({"generate", "--model", model.string(), "--prompt", "a cat", "--size", "64x64",
                                "--steps", "1", "--out", (model / "images").string()});
  EXPECT_EQ(g.exit_code, 2) << g.err;
  EXPECT_NE(g.err.find("is inside the model folder"), std::string::npos) << g.err;
  EXPECT_FALSE(fs::exists(model / "images"));
  test::write_file(dir / "in-model.toml", config(model / "run", "max_steps = 1\n"));
  const auto t = test::run_cli({"train", (dir / "in-model.toml").string(), "--set",
                                "model.pretrained=\"" + model.string() + "\""});
  EXPECT_EQ(t.exit_code, 2) << t.err;
  EXPECT_NE(t.err.find("output.dir: '" + (model / "run").string() + "' is inside the model folder"),
            std::string::npos)
      << t.err;
  EXPECT_FALSE(fs::exists(model / "run"));
  for (const std::vector<std::string>& bad : {std::vector<std::string>{"--steps", "100000000"},
                                              std::vector<std::string>{"--size", "100000x100000"},
                                              std::vector<std::string>{"--lora-scale", "nan", "--lora", "x.safetensors"},
                                              std::vector<std::string>{"--lora-scale", "1e30", "--lora", "x.safetensors"}}) {
    std::vector<std::string> args{"generate", "--model", model.string(), "--prompt", "a cat", "--out",
                                  (dir / "gen").string()};
    args.insert(args.end(), bad.begin(), bad.end());
    const auto r = test::run_cli(args);
    EXPECT_EQ(r.exit_code, 2) << bad[0] << "\n" << r.err;
  }
  EXPECT_FALSE(fs::exists(dir / "gen"));
  if (!torch_sees_no_gpu()) return;
  test::write_file(dir / "run.toml", config(dir / "out", "max_steps = 1\ndevice = \"cuda\"\n"));
  const auto c = test::run_cli({"train", (dir / "run.toml").string()});
  EXPECT_EQ(c.exit_code, 2) << c.err;
  EXPECT_NE(c.err.find("train.device = \"cuda\", but no GPU is visible"), std::string::npos) << c.err;
  EXPECT_NE(c.err.find("set train.device = \"cpu\""), std::string::npos) << c.err;
}

}  // namespace

// A FIFO where the lock file goes held train and generate in open() for good (and past
// SIGTERM): refused at once, naming it.
TEST(RunGuard, ALockFileThatIsNoFileIsRefused) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  fs::create_directories(dir / "out");
  ASSERT_EQ(::mkfifo((dir / "out" / ".sdxl-dreambooth.lock").c_str(), 0644), 0);
  test::write_file(dir / "run.toml", config(dir / "out", "max_steps = 1\n"));
  const auto train = test::run_cli({"train", (dir / "run.toml").string()});
  EXPECT_EQ(train.exit_code, 2) << train.err;
  EXPECT_NE(train.err.find(".sdxl-dreambooth.lock' is not a regular file"), std::string::npos) << train.err;
  const auto generate = test::run_cli({"generate", "--model", (test::reference_dir() / "tiny-sdxl").string(),
                                       "--prompt", "x", "--size", "64x64", "--steps", "1", "--out",
                                       (dir / "out").string()});
  EXPECT_EQ(generate.exit_code, 2) << generate.err;
  EXPECT_NE(generate.err.find(".sdxl-dreambooth.lock' is not a regular file"), std::string::npos) << generate.err;
}
