#include "lora_train_case.h"

#include "parity_support.h"
#include "sdxl_dreambooth/model/component_loader.h"
#include "sdxl_dreambooth/nn/lora_network.h"
#include "sdxl_dreambooth/train/adamw.h"
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

}  // namespace

std::vector<LoraTrainCase> lora_train_cases() {
  return {{"plain", false, std::nullopt, 1.0}, {"prior_snr", true, 5.0, 1.0}, {"clipped", false, std::nullopt, 0.01}};
}

void check_lora_train_steps(const LoraTrainCase& c, const torch::Device& device) {
  const auto ref = vectors(std::string("lora_train_") + c.name);
  model::ComponentLoadOptions load;
  load.device = device;
  auto unet = model::load_unet(tiny_sdxl() / "unet", load);
  const auto schedule =
      sampling::NoiseSchedule(model::SchedulerConfig::load(tiny_sdxl() / "scheduler" / "scheduler_config.json"));
  auto gen = at::detail::createCPUGenerator(0);
  auto lora = nn::LoraNetwork::inject(*unet, {4, 4.0, {"to_q", "to_k", "to_v", "to_out.0"}}, gen, "UNet");
  lora.load(with_prefix(ref, "init."), "init");
  const auto params = lora.parameters();
  const auto named = lora.named_parameters();
  ASSERT_EQ(named.size(), with_prefix(ref, "init.").size());
  ASSERT_EQ(params.front().device(), device);
  train::AdamW opt(params, {0.9, 0.999, 1e-8, 1e-4});
  const double lr = 1e-3;

  train::LossOptions lo;
  lo.with_prior = c.with_prior;
  lo.snr_gamma = c.snr_gamma;
  for (int step = 0; step < 2; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    const std::string s = "step" + std::to_string(step) + ".";
    auto input = [&](const char* name) { return ref.tensor(s + "input." + name).to(device); };
    train::DiffusionBatch b;
    b.latents = input("latents");
    b.noise = input("noise");
    b.timesteps = input("t");
    b.prompt_embeds = input("ehs");
    b.text_embeds = input("te");
    b.time_ids = input("tid");
    opt.zero_grad();
    const auto r = train::diffusion_loss(unet, schedule, b, lo);
    r.loss.backward();
    const double expected_loss = ref.tensor(s + "loss").item<double>();
    EXPECT_LE(std::abs(r.loss.item<double>() - expected_loss), 1e-5 * std::abs(expected_loss))
        << r.loss.item<double>() << " vs " << expected_loss;

    // What train_step.cpp does: one flat gradient, clipped, then AdamW on it.
    std::vector<bool> has_grad;
    torch::Tensor flat = train::flatten_gradients(params, device, &has_grad);
    const double norm = train::clip_flat_grad_norm(flat, c.max_grad_norm).item<double>();
    const double expected_norm = ref.tensor(s + "grad_norm_before_clip").item<double>();
    EXPECT_NEAR(norm, expected_norm, 1e-4 * expected_norm);

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

}  // namespace sdxl::test
