// optimizer.kind = "prodigy" end to end through the real binary, with text-encoder LoRA (three
// parameter groups, one step-size estimate): a preempted run resumes to the same bits (the
// estimate d and every s and p0 tensor are in the checkpoint); its checkpoint does not resume
// an AdamW run; a learning rate far from 1.0 is warned about.
#include "sdxl_dreambooth/io/event_file.h"
#include "sdxl_dreambooth/train/checkpoint_file.h"
#include "tensorboard_event.pb.h"
#include "support/process.h"
#include "support/reference.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>

using namespace sdxl;
namespace fs = std::filesystem;

namespace {

std::string prodigy_run_config(const fs::path& out, const std::string& learning_rate = "1.0") {
  std::ostringstream s;
  s << "[model]\npretrained = \"" << (test::reference_dir() / "tiny-sdxl").string() << "\"\n"
    << "[data]\ninstance_dir = \"" << (test::subjects_dir() / "chelsea").string() << "\"\n"
    << "instance_prompt = \"a photo of sks cat\"\nresolution = 64\ncenter_crop = true\n"
    << "[lora]\ntrain_text_encoder = true\n"
    << "[optimizer]\nkind = \"prodigy\"\n"
    << "[train]\nseed = 0\nlearning_rate = " << learning_rate << "\nbatch_size = 2\nmax_steps = 6\n"
    << "[checkpoint]\nevery_steps = 3\n"
    << "[output]\ndir = \"" << out.string() << "\"\nkohya = false\n";
  return s.str();
}

// The TensorBoard event files of a run's logs/ folder, oldest first, each as its events.
std::vector<std::vector<tensorboard::Event>> event_files(const fs::path& logs) {
  std::vector<fs::path> paths;
  for (const auto& e : fs::directory_iterator(logs)) paths.push_back(e.path());
  std::sort(paths.begin(), paths.end());
  std::vector<std::vector<tensorboard::Event>> out;
  for (const auto& p : paths) {
    out.emplace_back();
    for (const auto& r : io::read_event_records(p)) {
      out.back().emplace_back();
      EXPECT_TRUE(out.back().back().ParseFromString(r));
    }
  }
  return out;
}

// metrics.csv's loss column by step.
std::map<std::int64_t, double> csv_losses(const fs::path& csv) {
  std::ifstream in(csv);
  std::string line;
  std::getline(in, line);
  std::map<std::int64_t, double> out;
  while (std::getline(in, line)) {
    const auto a = line.find(',');
    out[std::stoll(line.substr(0, a))] = std::stod(line.substr(a + 1, line.find(',', a + 1) - a - 1));
  }
  return out;
}

}  // namespace

TEST(ProdigyTraining, ResumesBitwiseAndIsCheckedAgainstTheConfig) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  test::write_file(dir / "straight.toml", prodigy_run_config(dir / "out"));
  test::write_file(dir / "stopped.toml", prodigy_run_config(dir / "out2"));
  const auto straight = test::run_cli({"train", (dir / "straight.toml").string()});
  ASSERT_EQ(straight.exit_code, 0) << straight.err;
  EXPECT_EQ(straight.err.find("advise a learning rate near 1.0"), std::string::npos) << straight.err;
  EXPECT_NE(straight.err.find("Prodigy steps the text-encoder adapters at the UNet's learning rate"),
            std::string::npos)
      << straight.err;

  const auto [stopped, resumed] = test::preempt_and_resume(dir / "stopped.toml", 4);
  ASSERT_EQ(stopped.exit_code, 75) << stopped.err;
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(test::read_file(dir / "out" / "pytorch_lora_weights.safetensors"),
            test::read_file(dir / "out2" / "pytorch_lora_weights.safetensors"));

  // TensorBoard: the loss of every step as metrics.csv has it, Prodigy's step size; the resumed
  // run's file starts with SessionLog START at the checkpoint's step (no sawtooth).
  const auto straight_events = event_files(dir / "out" / "logs");
  ASSERT_EQ(straight_events.size(), 1u);
  std::map<std::int64_t, double> tb_loss;
  bool step_size = false;
  for (const auto& e : straight_events[0]) {
    for (const auto& v : e.summary().value()) {
      if (v.tag() == "loss") tb_loss[e.step()] = v.simple_value();
      step_size |= v.tag() == "lr/prodigy_step_size";
    }
  }
  const auto csv = csv_losses(dir / "out" / "metrics.csv");
  ASSERT_EQ(tb_loss.size(), csv.size());
  for (const auto& [step, loss] : csv) EXPECT_NEAR(tb_loss.at(step), loss, 1e-6 * std::abs(loss)) << step;
  EXPECT_TRUE(step_size);
  const auto resumed_events = event_files(dir / "out2" / "logs");
  ASSERT_EQ(resumed_events.size(), 2u);
  ASSERT_GE(resumed_events[1].size(), 2u);
  EXPECT_EQ(resumed_events[1][1].session_log().status(), tensorboard::SessionLog::START);
  EXPECT_EQ(resumed_events[1][1].step(), 4);  // the preempted run checkpointed step 4

  const auto a = train::read_checkpoint_file((dir / "out" / "checkpoints" / "checkpoint-6.h5").string());
  const auto b = train::read_checkpoint_file((dir / "out2" / "checkpoints" / "checkpoint-6.h5").string());
  EXPECT_EQ(a.optimizer_type, "Prodigy");
  EXPECT_EQ(a.optimizer_state, (std::vector<std::string>{"exp_avg", "exp_avg_sq", "s", "p0"}));
  EXPECT_GT(a.optimizer_scalars.at("d"), 0.0);
  EXPECT_EQ(a.optimizer_scalars, b.optimizer_scalars);
  ASSERT_EQ(a.adapters.size(), 3u);
  for (std::size_t m = 0; m < a.adapters.size(); ++m) {
    EXPECT_EQ(a.adapters[m].optimizer_steps, 6);
    ASSERT_EQ(a.adapters[m].params.size(), b.adapters[m].params.size());
    for (std::size_t i = 0; i < a.adapters[m].params.size(); ++i) {
      const auto& p = a.adapters[m].params[i];
      const auto& q = b.adapters[m].params[i];
      EXPECT_TRUE(torch::equal(p.weight, q.weight)) << p.module << "/" << p.half;
      for (const auto& [name, t] : p.state) EXPECT_TRUE(torch::equal(t, q.state.at(name))) << p.module << " " << name;
    }
  }

  const auto adamw = test::run_cli({"train", (dir / "stopped.toml").string(), "--set", "checkpoint.resume=\"latest\"",
                                    "--set", "optimizer.kind=\"adamw\"", "--set", "train.max_steps=7"});
  EXPECT_EQ(adamw.exit_code, 2);
  EXPECT_NE(adamw.err.find("was written by a run with the Prodigy optimizer, this run uses AdamW"), std::string::npos)
      << adamw.err;

  test::write_file(dir / "low.toml", prodigy_run_config(dir / "out3", "1e-4"));
  const auto low = test::run_cli({"train", (dir / "low.toml").string(), "--set", "train.max_steps=1"});
  ASSERT_EQ(low.exit_code, 0) << low.err;
  EXPECT_NE(low.err.find("its authors advise a learning rate near 1.0"), std::string::npos) << low.err;
}
