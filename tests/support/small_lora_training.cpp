#include "support/small_lora_training.h"

#include "sdxl_dreambooth/util/to_device.h"
#include "support/one_rank_collectives.h"
#include "support/small_unet.h"

namespace sdxl::test {
SmallLoraTraining::SmallLoraTraining(const torch::Device& device, const SmallLoraTrainingOptions& options)
    : device_(device), gen_(at::detail::createCPUGenerator(0)) {
  unet_ = small_unet();
  unet_->to(device_, options.dtype);
  for (auto& p : unet_->parameters()) p.set_requires_grad(false);
  lora_ = nn::LoraNetwork::inject(*unet_, {4, 4.0, {"to_q", "to_k", "to_v", "to_out.0"}}, gen_, "UNet");
  unet_->set_gradient_checkpointing(options.gradient_checkpointing);
  if (options.fuse_projections) unet_->fuse_projections();
  unet_->set_fused_kernels(options.fused_kernels);
  optimizer_ = std::make_unique<train::AdamWGroups>(std::vector<train::ParamGroup>{{lora_.parameters(), 1.0, 1e-2}},
                                                    train::AdamWOptions{0.9, 0.999, 1e-8, 1e-2});
  comm_ = make_one_rank_collectives(device_);
  schedule_ = std::make_unique<sampling::NoiseSchedule>(sampling::NoiseSchedule(model::SchedulerConfig{}).to(device_));
  if (options.graph) graph_ = std::make_unique<train::StepGraph>(*options.graph);
  parts_.unet = unet_;
  parts_.schedule = schedule_.get();
  parts_.loss.snr_gamma = 5.0;
  parts_.unet_lora = &lora_;
  parts_.cast_adapters_once = options.cast_adapters_once;
  parts_.params = lora_.parameters();
  parts_.optimizer = optimizer_.get();
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
