#include "sdxl_dreambooth/train/tensorboard_log.h"

#include "sdxl_dreambooth/io/png_writer.h"

namespace sdxl::train {

TensorBoardLog::TensorBoardLog(const std::filesystem::path& dir, std::int64_t start_step,
                               const std::string& config_toml)
    : file_(dir) {
  if (start_step > 0) file_.restart(start_step);
  file_.text("config", "```toml\n" + config_toml + "```", start_step);
  file_.flush();
}

void TensorBoardLog::step(const MetricsRow& row, const StepScalars& more) {
  // An exponential moving average (TensorBoard's own smoothing applies on top).
  smoothed_ = have_smoothed_ ? 0.9 * smoothed_ + 0.1 * row.loss : row.loss;
  have_smoothed_ = true;
  file_.scalar("loss", row.loss, row.step);
  file_.scalar("loss_smoothed", smoothed_, row.step);
  file_.scalar("lr/unet", row.lr, row.step);
  if (more.text_encoder_lr >= 0) file_.scalar("lr/text_encoders", more.text_encoder_lr, row.step);
  if (more.step_size >= 0) file_.scalar("lr/prodigy_step_size", more.step_size, row.step);
  file_.scalar("grad_norm", row.grad_norm, row.step);
  file_.scalar("time/step_seconds", row.step_seconds, row.step);
  if (row.step_seconds > 0) file_.scalar("time/images_per_second", more.images_per_step / row.step_seconds, row.step);
  if (more.loss_scale >= 0) file_.scalar("fp16/loss_scale", more.loss_scale, row.step);
  if (more.loss_scale >= 0) file_.scalar("fp16/skipped_steps", static_cast<double>(more.skipped_steps), row.step);
}

void TensorBoardLog::validation(const std::vector<SampleImage>& images, std::int64_t step) {
  for (const SampleImage& img : images) {
    const torch::Tensor rgb = img.rgb.contiguous();
    const int h = static_cast<int>(rgb.size(0)), w = static_cast<int>(rgb.size(1));
    file_.image("validation/" + std::to_string(img.prompt_index) + "_" + std::to_string(img.image_index) + " " +
                    img.prompt,
                io::encode_png(rgb.data_ptr<std::uint8_t>(), w, h), w, h, step);
  }
  file_.flush();
}

}  // namespace sdxl::train
