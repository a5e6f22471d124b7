#include "sdxl_dreambooth/train/diffusion_loss.h"

#include "sdxl_dreambooth/error.h"

#include <cmath>

namespace sdxl::train {

namespace {

std::vector<std::int64_t> example_dims(const torch::Tensor& t) {
  std::vector<std::int64_t> dims;
  for (std::int64_t d = 1; d < t.dim(); ++d) dims.push_back(d);
  return dims;
}

// Each example's loss, [B]: its mean squared error, or its mean pseudo-Huber loss.
torch::Tensor example_losses(const torch::Tensor& pred, const torch::Tensor& target, const torch::Tensor& c,
                             const LossOptions& o) {
  namespace F = torch::nn::functional;
  if (o.loss == "l2") return F::mse_loss(pred, target, F::MSELossFuncOptions().reduction(torch::kNone)).mean(example_dims(pred));
  return pseudo_huber(pred, target, c, o.loss).mean(example_dims(pred));
}

// Mixed prior preservation: `losses` [B] of instance rows (the first `instance_rows`, with any
// weighting already applied) then class rows; each part summed over B / 2, so a half-and-half
// batch gives the means diffusers' pairs give, and a batch of one kind weighs its rows the same.
LossResult mixed_prior_loss(const torch::Tensor& losses, std::int64_t instance_rows, double prior_loss_weight) {
  const std::int64_t n = losses.size(0);
  if (n % 2 != 0 || instance_rows < 0 || instance_rows > n) {
    throw Error("internal: a mixed prior-preservation batch of " + std::to_string(n) + " rows with " +
                std::to_string(instance_rows) + " instance rows");
  }
  const double half = static_cast<double>(n / 2);
  LossResult r;
  const torch::Tensor instance = losses.narrow(0, 0, instance_rows).sum() / half;
  const torch::Tensor prior = losses.narrow(0, instance_rows, n - instance_rows).sum() / half;
  r.loss = instance + prior_loss_weight * prior;
  r.instance_loss = instance.detach();
  r.prior_loss = prior.detach();
  return r;
}

// Weights for rows [instance…; class…] whose instance rows take `instance_weights` and class
// rows 1 (diffusers weighs only the instance loss by SNR).
torch::Tensor instance_only(const torch::Tensor& instance_weights, std::int64_t instance_rows) {
  const std::int64_t n = instance_weights.size(0);
  return torch::cat({instance_weights.narrow(0, 0, instance_rows),
                     torch::ones({n - instance_rows}, instance_weights.options())});
}

}  // namespace

torch::Tensor min_snr_weights(const sampling::NoiseSchedule& schedule, const torch::Tensor& timesteps,
                              const LossOptions& o) {
  // Min-SNR-γ (arXiv 2303.09556 §3.4), for ε prediction: min(SNR, γ) / SNR; v: + 1.
  const torch::Tensor snr = schedule.snr(timesteps).to(timesteps.device());
  torch::Tensor weights = torch::clamp_max(snr, *o.snr_gamma) / snr;
  if (o.prediction_type == "v_prediction") weights = weights + 1.0;
  return weights;
}

torch::Tensor huber_c(const sampling::NoiseSchedule& schedule, const torch::Tensor& timesteps, const LossOptions& o) {
  // ref: kohya sd-scripts train_util.get_timesteps_and_huber_c, per example.
  const torch::Tensor t = timesteps.to(torch::kFloat);
  if (o.huber_schedule == "constant") return torch::full_like(t, o.huber_c);
  if (o.huber_schedule == "exponential") {
    const double alpha = -std::log(o.huber_c) / static_cast<double>(schedule.num_train_timesteps());
    return torch::exp(-alpha * t);
  }
  const torch::Tensor ac = schedule.alphas_cumprod().to(timesteps.device()).index({timesteps.to(torch::kLong)});
  const torch::Tensor sigma = ((1.0 - ac) / ac).pow(0.5);
  return (1 - o.huber_c) / (1 + sigma).pow(2) + o.huber_c;
}

torch::Tensor pseudo_huber(const torch::Tensor& pred, const torch::Tensor& target, const torch::Tensor& c,
                           const std::string& loss) {
  torch::Tensor cc = c.to(pred.device(), pred.scalar_type());
  while (cc.dim() < pred.dim()) cc = cc.unsqueeze(-1);
  const torch::Tensor root = ((pred - target).pow(2) + cc.pow(2)).sqrt() - cc;
  if (loss == "huber") return 2 * cc * root;
  if (loss == "smooth_l1") return 2 * root;
  throw UsageError("unknown train.loss \"" + loss + "\" (expected l2, huber or smooth_l1)");
}

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
  const bool huber = o.loss != "l2";
  torch::Tensor c = huber ? huber_c(schedule, b.timesteps, o) : torch::Tensor();

  if (o.with_prior && b.instance_rows) {
    torch::Tensor losses = example_losses(pred, target, c, o);
    if (o.snr_gamma) losses = losses * instance_only(min_snr_weights(schedule, timesteps, o), *b.instance_rows);
    return mixed_prior_loss(losses, *b.instance_rows, o.prior_loss_weight);
  }
  LossResult r;
  if (o.with_prior) {
    const std::int64_t n = pred.size(0);
    if (n % 2 != 0) throw Error("prior preservation needs an even batch (instance + class rows), got " +
                                std::to_string(n));
    auto p = pred.chunk(2, 0), t = target.chunk(2, 0);
    pred = p[0];
    target = t[0];
    r.prior_loss = huber ? example_losses(p[1], t[1], c.chunk(2, 0)[1], o).mean()
                         : F::mse_loss(p[1], t[1], F::MSELossFuncOptions().reduction(torch::kMean));
    // The SNR weights apply to the instance half only.
    timesteps = timesteps.chunk(2, 0)[0];
    if (huber) c = c.chunk(2, 0)[0];
  }
  torch::Tensor loss;
  if (!o.snr_gamma && !huber) {
    loss = F::mse_loss(pred, target, F::MSELossFuncOptions().reduction(torch::kMean));
  } else if (!o.snr_gamma) {
    loss = example_losses(pred, target, c, o).mean();
  } else {
    loss = (example_losses(pred, target, c, o) * min_snr_weights(schedule, timesteps, o)).mean();
  }
  r.instance_loss = loss.detach();
  if (o.with_prior) loss = loss + o.prior_loss_weight * r.prior_loss;
  if (r.prior_loss.defined()) r.prior_loss = r.prior_loss.detach();
  r.loss = loss;
  return r;
}

namespace {

// mean over each example of weighting · (pred - target)², then over the batch (diffusers'
// reduction with a weighting; plain MSE without one).
torch::Tensor weighted_mse(const torch::Tensor& pred, const torch::Tensor& target, const torch::Tensor& weighting) {
  namespace F = torch::nn::functional;
  if (!weighting.defined()) return F::mse_loss(pred, target, F::MSELossFuncOptions().reduction(torch::kMean));
  return (weighting * (pred - target).pow(2)).reshape({target.size(0), -1}).mean(1).mean();
}

}  // namespace

LossResult edm_diffusion_loss(nn::UNet2DConditionModel& unet, const sampling::EdmSchedule& schedule,
                              const DiffusionBatch& b, const LossOptions& o) {
  if (o.snr_gamma) throw UsageError("train.snr_gamma does not apply to EDM-style training");
  const auto dtype = unet->conv_in->weight.scalar_type();
  const torch::Tensor timesteps = schedule.timesteps(b.timesteps);
  torch::Tensor sigma = schedule.sigmas(b.timesteps).to(b.latents.scalar_type());
  while (sigma.dim() < b.latents.dim()) sigma = sigma.unsqueeze(-1);
  const torch::Tensor noisy = b.latents + b.noise * sigma;
  torch::Tensor pred = unet(schedule.precondition_inputs(noisy, sigma).to(dtype), timesteps,
                            b.prompt_embeds.to(dtype), b.text_embeds.to(dtype), b.time_ids.to(dtype));
  pred = schedule.precondition_outputs(noisy, pred.to(torch::kFloat), sigma, o.prediction_type);
  torch::Tensor target = b.latents.to(torch::kFloat);
  torch::Tensor weighting = schedule.loss_weighting(sigma);

  if (o.with_prior && b.instance_rows) {
    torch::Tensor d = (pred - target).pow(2);
    if (weighting.defined()) d = weighting * d;
    return mixed_prior_loss(d.reshape({target.size(0), -1}).mean(1), *b.instance_rows, o.prior_loss_weight);
  }
  LossResult r;
  if (o.with_prior) {
    if (pred.size(0) % 2 != 0) {
      throw Error("prior preservation needs an even batch (instance + class rows), got " +
                  std::to_string(pred.size(0)));
    }
    auto p = pred.chunk(2, 0), t = target.chunk(2, 0);
    const torch::Tensor prior_weighting = weighting.defined() ? weighting.chunk(2, 0)[1] : torch::Tensor();
    r.prior_loss = weighted_mse(p[1], t[1], prior_weighting);
    pred = p[0];
    target = t[0];
    if (weighting.defined()) weighting = weighting.chunk(2, 0)[0];
  }
  torch::Tensor loss = weighted_mse(pred, target, weighting);
  r.instance_loss = loss.detach();
  if (o.with_prior) loss = loss + o.prior_loss_weight * r.prior_loss;
  if (r.prior_loss.defined()) r.prior_loss = r.prior_loss.detach();
  r.loss = loss;
  return r;
}

}  // namespace sdxl::train
