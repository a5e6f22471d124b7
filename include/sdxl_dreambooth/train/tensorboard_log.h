// logging.tensorboard: what a run shows in TensorBoard (rank 0, output.dir/logs/): per step the
// loss, its running mean, the learning rate (and the text encoders', and Prodigy's step size),
// the gradient norm, the step time and images/s, the fp16 loss scale and skipped steps; the
// validation images at each validation; the run's configuration as text. A resumed run writes a
// new file in the same folder starting with SessionLog START at the checkpoint's step, which
// makes TensorBoard drop what the interrupted run logged after it: one curve, no sawtooth.
#pragma once

#include "sdxl_dreambooth/io/event_file.h"
#include "sdxl_dreambooth/train/checkpoint_file.h"

#include <filesystem>
#include <string>
#include <vector>

namespace sdxl::train {

// The values of one step beyond its metrics row.
struct StepScalars {
  double text_encoder_lr = -1;  // < 0: no text-encoder adapters
  double step_size = -1;        // Prodigy's d · lr; < 0: not Prodigy
  double images_per_step = 0;
  double loss_scale = -1;       // < 0: no fp16 loss scaling
  std::int64_t skipped_steps = 0;
};

class TensorBoardLog {
 public:
  // `start_step` > 0: a resumed run.
  TensorBoardLog(const std::filesystem::path& dir, std::int64_t start_step, const std::string& config_toml);

  void step(const MetricsRow& row, const StepScalars& more);
  void validation(const std::vector<SampleImage>& images, std::int64_t step);
  void flush() { file_.flush(); }
  const std::filesystem::path& path() const { return file_.path(); }

 private:
  io::EventFileWriter file_;
  double smoothed_ = 0;
  bool have_smoothed_ = false;
};

}  // namespace sdxl::train
