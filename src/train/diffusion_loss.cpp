#include "sdxl_dreambooth/train/diffusion_loss.h"

#include "sdxl_dreambooth/error.h"

namespace sdxl::train {

LossResult diffusion_loss(nn::UNet2DConditionModel& unet, const sampling::NoiseSchedule& schedule,
                          const DiffusionBatch& b, const LossOptions& o) {
  namespace F = torch::nn::functional;
  const auto dtype = unet->conv_in->weight.scalar_type();
  const torch::Tensor noisy = schedule.add_noise(b.latents, b.noise, b.timesteps);
  torch::Tensor pred = unet(noisy.to(dtype), b.timesteps, b.prompt_embeds.to(dtype), b.text_embeds.to(dtype),
                            b.time_ids.to(dtype));
  torch::Tensor target;
  if (o.prediction_type == "epsilon") {
    target = b.noise;
  } else if (o.prediction_type == "v_prediction") {
    target = schedule.velocity(b.latents, b.noise, b.timesteps);
  } else {
    throw UsageError("unknown prediction type \"" + o.prediction_type + "\" (expected epsilon or v_prediction)");
  }
  pred = pred.to(torch::kFloat);
  target = target.to(torch::kFloat);
  torch::Tensor timesteps = b.timesteps;

  LossResult r;
  if (o.with_prior) {
    const std::int64_t n = pred.size(0);
    if (n % 2 != 0) throw Error("prior preservation needs an even batch (instance + class rows), got " +
                                std::to_string(n));
    auto p = pred.chunk(2, 0), t = target.chunk(2, 0);
    pred = p[0];
    target = t[0];
    r.prior_loss = F::mse_loss(p[1], t[1], F::MSELossFuncOptions().reduction(torch::kMean));
    // The SNR weights apply to the instance half only.
    timesteps = timesteps.chunk(2, 0)[0];
  }
  torch::Tensor loss;
  if (!o.snr_gamma) {
    loss = F::mse_loss(pred, target, F::MSELossFuncOptions().reduction(torch::kMean));
  } else {
    // Min-SNR-γ (arXiv 2303.09556 §3.4), for ε prediction: min(SNR, γ) / SNR; v: + 1.
    const torch::Tensor snr = schedule.snr(timesteps).to(pred.device());
    torch::Tensor weights = torch::clamp_max(snr, *o.snr_gamma) / snr;
    if (o.prediction_type == "v_prediction") weights = weights + 1.0;
    std::vector<std::int64_t> dims;
    for (std::int64_t d = 1; d < pred.dim(); ++d) dims.push_back(d);
    loss = (F::mse_loss(pred, target, F::MSELossFuncOptions().reduction(torch::kNone)).mean(dims) * weights).mean();
  }
  r.instance_loss = loss.detach();
  if (o.with_prior) loss = loss + o.prior_loss_weight * r.prior_loss;
  if (r.prior_loss.defined()) r.prior_loss = r.prior_loss.detach();
  r.loss = loss;
  return r;
}

}  // namespace sdxl::train
