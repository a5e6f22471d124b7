#include "lora_train_case.h"

#include "parity_support.h"
#include "sdxl_dreambooth/config/config.h"
#include "sdxl_dreambooth/model/component_loader.h"
#include "sdxl_dreambooth/nn/lora_network.h"
#include "sdxl_dreambooth/nn/prompt_encoding.h"
#include "sdxl_dreambooth/train/trained_adapters.h"
#include "sdxl_dreambooth/train/training_setup.h"
#include "sdxl_dreambooth/train/adamw.h"
#include "sdxl_dreambooth/train/prodigy.h"
#include "sdxl_dreambooth/train/diffusion_loss.h"
#include "sdxl_dreambooth/train/grad_norm.h"
#include "sdxl_dreambooth/train/gradient_sync.h"
#include "sdxl_dreambooth/util/strings.h"

#include <map>
#include <string>

namespace sdxl::test {

namespace {

std::map<std::string, torch::Tensor> with_prefix(const model::WeightSource& ref, const std::string& prefix) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& name : ref.names()) {
    if (util::starts_with(name, prefix)) out[name.substr(prefix.size())] = ref.tensor(name);
  }
  return out;
}

train::DiffusionBatch reference_batch(const model::WeightSource& ref, const std::string& step,
                                      const torch::Device& device) {
  auto input = [&](const char* name) { return ref.tensor(step + "input." + name).to(device); };
  train::DiffusionBatch b;
  b.latents = input("latents");
  b.noise = input("noise");
  // EDM-style records hold the draw as indices into the schedule.
  b.timesteps = ref.contains(step + "input.t") ? input("t") : input("indices");
  b.prompt_embeds = input("ehs");
  b.text_embeds = input("te");
  b.time_ids = input("tid");
  return b;
}

// tiny-sdxl's UNet on `device` with rank-4 adapters on the attention projections (DoRA ones when
// `dora`) set to the record's init.* tensors, and its noise schedule.
struct TinyUnetWithLora {
  nn::UNet2DConditionModel unet;
  sampling::NoiseSchedule schedule;
  nn::LoraNetwork lora;
};

TinyUnetWithLora tiny_unet_with_lora(const model::WeightSource& ref, const torch::Device& device, bool dora) {
  model::ComponentLoadOptions load;
  load.device = device;
  TinyUnetWithLora t{model::load_unet(tiny_sdxl() / "unet", load),
                     sampling::NoiseSchedule(
                         model::SchedulerConfig::load(tiny_sdxl() / "scheduler" / "scheduler_config.json")),
                     {}};
  auto gen = at::detail::createCPUGenerator(0);
  t.lora = nn::LoraNetwork::inject(*t.unet, {4, 4.0, {"to_q", "to_k", "to_v", "to_out.0"}, dora}, gen, "UNet");
  t.lora.load(with_prefix(ref, "init."), "init");
  return t;
}

// The step's loss and its gradient norm before clipping against the record `s`; returns the flat
// gradient of `params`, clipped to max_norm, with which of them had one.
torch::Tensor checked_flat_gradient(const model::WeightSource& ref, const std::string& s, const torch::Tensor& loss,
                                    const std::vector<torch::Tensor>& params, const torch::Device& device,
                                    double max_norm, std::vector<bool>& has_grad) {
  const double expected_loss = ref.tensor(s + "loss").item<double>();
  EXPECT_LE(std::abs(loss.item<double>() - expected_loss), 1e-5 * std::abs(expected_loss))
      << loss.item<double>() << " vs " << expected_loss;
  torch::Tensor flat = train::flatten_gradients(params, device, &has_grad);
  const double norm = train::clip_flat_grad_norm(flat, max_norm).item<double>();
  const double expected_norm = ref.tensor(s + "grad_norm_before_clip").item<double>();
  EXPECT_NEAR(norm, expected_norm, 1e-4 * expected_norm);
  return flat;
}

}  // namespace

std::vector<LoraTrainCase> lora_train_cases() {
  return {{"plain", false, std::nullopt, 1.0},
          {"prior_snr", true, 5.0, 1.0},
          {"clipped", false, std::nullopt, 0.01},
          {"dora", false, std::nullopt, 1.0, /*dora=*/true},
          {"edm_sdxl_euler", false, std::nullopt, 1.0, false, "euler"},
          {"edm_sdxl_euler_v", false, std::nullopt, 1.0, false, "euler_v"},
          {"edm_edm_base", false, std::nullopt, 1.0, false, "edm_base"}};
}

void check_lora_train_steps(const LoraTrainCase& c, const torch::Device& device) {
  const auto ref = vectors(std::string("lora_train_") + c.name);
  TinyUnetWithLora t = tiny_unet_with_lora(ref, device, c.dora);
  auto& unet = t.unet;
  const auto& schedule = t.schedule;
  auto& lora = t.lora;
  const auto params = lora.parameters();
  const auto named = lora.named_parameters();
  ASSERT_EQ(named.size(), with_prefix(ref, "init.").size());
  ASSERT_EQ(params.front().device(), device);
  train::AdamW opt(params, {0.9, 0.999, 1e-8, 1e-4});
  const double lr = 1e-3;

  train::LossOptions lo;
  lo.with_prior = c.with_prior;
  lo.snr_gamma = c.snr_gamma;
  std::optional<sampling::EdmSchedule> edm;
  if (c.edm) {
    const std::string kind = c.edm;
    const auto dir = kind == "edm_base" ? reference_dir() / "edm-scheduler" : tiny_sdxl() / "scheduler";
    edm.emplace(sampling::EdmSchedule(model::SchedulerConfig::load(dir / "scheduler_config.json")).to(device));
    if (kind == "euler_v") lo.prediction_type = "v_prediction";
  }
  for (int step = 0; step < 2; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    const std::string s = "step" + std::to_string(step) + ".";
    const train::DiffusionBatch b = reference_batch(ref, s, device);
    opt.zero_grad();
    if (edm) {
      // The draw is an index into the schedule; its σ and timestep as diffusers' get_sigmas finds them.
      const torch::Tensor want_sigma = ref.tensor(s + "input.sigmas");
      EXPECT_LE(((edm->sigmas(b.timesteps).cpu() - want_sigma).abs() / want_sigma.abs()).max().item<double>(), 1e-6);
      EXPECT_TENSOR_NEAR(edm->timesteps(b.timesteps).cpu(), ref.tensor(s + "input.timesteps"), 1e-6);
    }
    const auto r = edm ? train::edm_diffusion_loss(unet, *edm, b, lo) : train::diffusion_loss(unet, schedule, b, lo);
    r.loss.backward();
    // What train_step.cpp does: one flat gradient, clipped, then AdamW on it.
    std::vector<bool> has_grad;
    const torch::Tensor flat = checked_flat_gradient(ref, s, r.loss, params, device, c.max_grad_norm, has_grad);

    // The gradients the optimizer sees (after clipping): <= 1e-3 · max|g| absolute.
    double gmax = 0;
    for (const auto& [name, p] : named) gmax = std::max(gmax, ref.tensor(s + "grad." + name).abs().max().item<double>());
    std::int64_t offset = 0;
    for (std::size_t i = 0; i < named.size(); ++i) {
      const auto& [name, p] = named[i];
      ASSERT_TRUE(p.is_same(params[i])) << name;
      ASSERT_TRUE(has_grad[i]) << name;
      EXPECT_TENSOR_NEAR(flat.narrow(0, offset, p.numel()).view(p.sizes()), ref.tensor(s + "grad." + name),
                         1e-3 * gmax);
      offset += p.numel();
    }
    ASSERT_TRUE(opt.flat()) << "the parity run takes the fast path training takes";
    opt.step(lr, flat, has_grad);

    // Weights: <= 1e-5 for >= 99.5 % of elements, <= 2·lr for all.
    std::int64_t total = 0, close = 0;
    double worst = 0;
    for (const auto& [name, p] : named) {
      const torch::Tensor d = (p.detach().cpu() - ref.tensor(s + "after." + name)).abs();
      total += d.numel();
      close += (d <= 1e-5).sum().item<std::int64_t>();
      worst = std::max(worst, d.max().item<double>());
    }
    EXPECT_GE(static_cast<double>(close), 0.995 * static_cast<double>(total)) << close << " of " << total;
    EXPECT_LE(worst, 2 * lr);
  }
}

std::vector<ProdigyCase> prodigy_cases() {
  return {{"prodigy_default", std::nullopt, false, false}, {"prodigy_bias_warmup", 0.99, true, true}};
}

void check_prodigy_steps(const ProdigyCase& c, const torch::Device& device) {
  const auto ref = vectors(std::string("lora_train_") + c.name);
  TinyUnetWithLora t = tiny_unet_with_lora(ref, device, false);
  auto& unet = t.unet;
  const auto& schedule = t.schedule;
  auto& lora = t.lora;
  const auto params = lora.parameters();
  const auto named = lora.named_parameters();
  train::ProdigyOptions po;
  po.beta3 = c.beta3;
  po.use_bias_correction = c.use_bias_correction;
  po.safeguard_warmup = c.safeguard_warmup;
  train::Prodigy opt({{params, 1.0, 1e-4}}, po);

  for (int step = 0; step < 12; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    const std::string s = "step" + std::to_string(step) + ".";
    opt.zero_grad();
    const auto r = train::diffusion_loss(unet, schedule, reference_batch(ref, s, device), {});
    r.loss.backward();
    std::vector<bool> has_grad;
    const torch::Tensor flat = checked_flat_gradient(ref, s, r.loss, params, device, 1.0, has_grad);
    // Gradients as in the AdamW cases; the optimizer then steps on the reference's gradient.
    // Prodigy's first steps (d = 1e-6, d·eps = 1e-14 in Adam's denominator) turn a gradient
    // element's float32 rounding (1e-9 absolute) into 1e-3 of its tensor's update, so this
    // compares the optimizer from one gradient, and the backward pass separately.
    double gmax = 0;
    for (const auto& [name, p] : named) gmax = std::max(gmax, ref.tensor(s + "grad." + name).abs().max().item<double>());
    std::vector<torch::Tensor> reference_grads;
    std::int64_t offset = 0;
    for (const auto& [name, p] : named) {
      const torch::Tensor g = ref.tensor(s + "grad." + name);
      EXPECT_TENSOR_NEAR(flat.narrow(0, offset, p.numel()).view(p.sizes()).cpu(), g, 1e-3 * gmax);
      reference_grads.push_back(g.reshape({-1}));
      offset += p.numel();
    }
    opt.step(1.0, torch::cat(reference_grads).to(device), has_grad);
    const double expected_d = ref.tensor(s + "d").item<double>();
    EXPECT_NEAR(opt.d(), expected_d, 1e-4 * expected_d);

    // The change from init: <= 1e-3 of the largest change of that tensor.
    for (const auto& [name, p] : named) {
      const torch::Tensor init = ref.tensor("init." + name);
      const torch::Tensor want = ref.tensor(s + "after." + name) - init;
      const torch::Tensor got = p.detach().cpu() - init;
      const double scale = want.abs().max().item<double>();
      EXPECT_LE((got - want).abs().max().item<double>(), 1e-3 * scale) << name;
    }
  }
}


void check_text_encoder_lora_steps(const torch::Device& device) {
  const auto ref = vectors("lora_train_text_encoder");
  // The run's own set-up: TrainedAdapters from a config (three AdamW groups: the UNet at the
  // learning rate, both text encoders at lora.text_encoder_lr), the reference's weight decay.
  const config::RunConfig cfg =
      config::load_config_text("[model]\npretrained = \"" + tiny_sdxl().string() +
                                   "\"\n[data]\ninstance_dir = \"unused\"\ninstance_prompt = \"unused\"\n",
                               "text_encoder_lora.toml",
                               {"lora.train_text_encoder=true", "lora.text_encoder_lr=5e-4", "train.learning_rate=1e-3",
                                "optimizer.weight_decay=1e-4", "optimizer.text_encoder_weight_decay=1e-4"})
          .typed();
  auto pipe = pipeline::SdxlPipeline::load(train::base_model_options(cfg.model, torch::kFloat, device));
  auto gen = at::detail::createCPUGenerator(0);
  train::TrainedAdapters adapters(cfg, cfg.train.learning_rate, pipe, gen);
  // Every trained tensor under its reference name, in the order of adapters.params().
  std::vector<std::string> names;
  {
    torch::NoGradGuard no_grad;
    for (const auto& m : adapters.models()) {
      for (const auto& [name, p] : m.network->named_parameters()) {
        names.push_back(m.model + "." + name);
        torch::Tensor target = p;
        target.copy_(ref.tensor("init." + names.back()));
      }
    }
  }
  const auto& params = adapters.params();
  ASSERT_EQ(names.size(), params.size());
  ASSERT_EQ(names.size(), with_prefix(ref, "init.").size());
  const auto schedule =
      sampling::NoiseSchedule(model::SchedulerConfig::load(tiny_sdxl() / "scheduler" / "scheduler_config.json"));
  std::map<std::string, torch::Tensor> frozen;  // text_encoder's last layer: no gradient, never moves

  for (int step = 0; step < 2; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    const std::string s = "step" + std::to_string(step) + ".";
    auto input = [&](const char* name) { return ref.tensor(s + "input." + name).to(device); };
    // Re-encoded every step, through the adapters, as training_batch.cpp does.
    const auto e = nn::encode_prompt(pipe.text_encoder, pipe.text_encoder_2, input("ids_tokenizer"),
                                     input("ids_tokenizer_2"));
    train::DiffusionBatch b;
    b.latents = input("latents");
    b.noise = input("noise");
    b.timesteps = input("t");
    b.prompt_embeds = e.prompt_embeds;
    b.text_embeds = e.pooled_prompt_embeds;
    b.time_ids = input("tid");
    adapters.optimizer().zero_grad();
    const auto r = train::diffusion_loss(pipe.unet, schedule, b, {});
    r.loss.backward();
    std::vector<bool> has_grad;
    const torch::Tensor flat = checked_flat_gradient(ref, s, r.loss, params, device, 1.0, has_grad);
    double gmax = 0;
    for (const auto& name : names) {
      if (ref.contains(s + "grad." + name)) gmax = std::max(gmax, ref.tensor(s + "grad." + name).abs().max().item<double>());
    }
    std::int64_t offset = 0;
    for (std::size_t i = 0; i < names.size(); ++i) {
      const auto n = params[i].numel();
      if (!ref.contains(s + "grad." + names[i])) {
        EXPECT_FALSE(has_grad[i]) << names[i] << " has a gradient; SDXL never reads that layer's output";
        frozen.emplace(names[i], params[i].detach().cpu().clone());
      } else {
        EXPECT_TRUE(has_grad[i]) << names[i];
        EXPECT_TENSOR_NEAR(flat.narrow(0, offset, n).view(params[i].sizes()).cpu(), ref.tensor(s + "grad." + names[i]),
                           1e-3 * gmax);
      }
      offset += n;
    }
    adapters.optimizer().step(1e-3, flat, has_grad);

    std::int64_t total = 0, close = 0;
    double worst = 0;
    for (std::size_t i = 0; i < names.size(); ++i) {
      const torch::Tensor d = (params[i].detach().cpu() - ref.tensor(s + "after." + names[i])).abs();
      total += d.numel();
      close += (d <= 1e-5).sum().item<std::int64_t>();
      worst = std::max(worst, d.max().item<double>());
      if (frozen.count(names[i])) {
        EXPECT_TRUE(torch::equal(params[i].detach().cpu(), frozen.at(names[i]))) << names[i] << " moved";
      }
    }
    EXPECT_GE(static_cast<double>(close), 0.995 * static_cast<double>(total)) << close << " of " << total;
    EXPECT_LE(worst, 2e-3);
  }
  EXPECT_EQ(frozen.size(), 8u);  // q, k, v, out of text_encoder's last layer, A and B each
}

}  // namespace sdxl::test
