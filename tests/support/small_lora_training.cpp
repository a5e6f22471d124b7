#include "support/small_lora_training.h"

#include "sdxl_dreambooth/util/to_device.h"
#include "support/small_unet.h"

namespace sdxl::test {
namespace {

// One process, no peers: run_train_step makes no collective call at world size 1.
class OneRank : public dist::Collectives {
 public:
  explicit OneRank(const torch::Device& device) : device_(device) {}
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  std::string backend() const override { return "none"; }
  torch::Device device() const override { return device_; }
  void all_reduce_sum(torch::Tensor&, const char*) override {}
  void broadcast(torch::Tensor&, int, const char*) override {}
  torch::Tensor all_gather_rows(const torch::Tensor& t, const char*) override { return t; }
  double all_reduce_max(double v, const char*) override { return v; }
  double all_reduce_min(double v, const char*) override { return v; }

 private:
  torch::Device device_;
};

}  // namespace

SmallLoraTraining::SmallLoraTraining(const torch::Device& device, const SmallLoraTrainingOptions& options)
    : device_(device), gen_(at::detail::createCPUGenerator(0)) {
  unet_ = small_unet();
  unet_->to(device_, options.dtype);
  for (auto& p : unet_->parameters()) p.set_requires_grad(false);
  lora_ = nn::LoraNetwork::inject(*unet_, {4, 4.0, {"to_q", "to_k", "to_v", "to_out.0"}}, gen_, "UNet");
  unet_->set_gradient_checkpointing(options.gradient_checkpointing);
  if (options.fuse_projections) unet_->fuse_projections();
  unet_->set_fused_kernels(options.fused_kernels);
  optimizer_ = std::make_unique<train::AdamW>(lora_.parameters(), train::AdamWOptions{0.9, 0.999, 1e-8, 1e-2});
  comm_ = std::make_unique<OneRank>(device_);
  schedule_ = std::make_unique<sampling::NoiseSchedule>(sampling::NoiseSchedule(model::SchedulerConfig{}).to(device_));
  if (options.graph) graph_ = std::make_unique<train::StepGraph>(*options.graph);
  parts_.unet = unet_;
  parts_.schedule = schedule_.get();
  parts_.loss.snr_gamma = 5.0;
  parts_.unet_lora = &lora_;
  parts_.cast_adapters_once = options.cast_adapters_once;
  parts_.params = lora_.parameters();
  parts_.optimizers = {{optimizer_.get(), 1.0}};
  parts_.scaler = &no_scaling_;
  parts_.comm = comm_.get();
  parts_.grad_accum = options.grad_accum;
  parts_.max_grad_norm = 1e-3;
  parts_.graph = graph_.get();
}

train::StepResult SmallLoraTraining::step() {
  auto batch = [&](std::int64_t) {
    auto up = [&](const torch::Tensor& t) { return util::to_device_async(t, device_); };
    train::DiffusionBatch b;
    b.latents = up(at::randn({2, 4, 8, 8}, gen_));
    b.noise = up(at::randn({2, 4, 8, 8}, gen_));
    b.timesteps = up(at::randint(0, 1000, {2}, gen_, torch::kLong));
    b.prompt_embeds = up(at::randn({2, 7, 24}, gen_));
    b.text_embeds = up(at::randn({2, 8}, gen_));
    b.time_ids = up(at::rand({2, 6}, gen_) * 64);
    return b;
  };
  return train::run_train_step(parts_, steps_++, 1e-3, batch, times_);
}

}  // namespace sdxl::test
