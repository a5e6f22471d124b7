// Noise schedule and samplers against diffusers 0.27.2 (vectors/ddpm, vectors/samplers).
#include "parity_support.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/sampling/noise_schedule.h"
#include "sdxl_dreambooth/sampling/sampler.h"

using namespace sdxl;

namespace {

model::SchedulerConfig tiny_scheduler() {
  return model::SchedulerConfig::load(test::tiny_sdxl() / "scheduler" / "scheduler_config.json");
}

// Runs `sampler` from `init` with samplers.json's stand-in model:
// eps(x, t) = tanh(0.5 * x_in) * (0.3 + t / 1000), x_in = scale_model_input(x, t).
torch::Tensor sample_with_stand_in(sampling::Sampler& sampler, const torch::Tensor& init) {
  torch::Tensor x = init.clone();
  for (std::size_t i = 0; i < sampler.timesteps().size(); ++i) {
    const torch::Tensor x_in = sampler.scale_model_input(x, i);
    const torch::Tensor t = torch::tensor(static_cast<float>(sampler.timesteps()[i]));
    const torch::Tensor eps = torch::tanh(0.5 * x_in) * (0.3 + t / 1000);
    x = sampler.step(eps, i, x);
  }
  return x;
}

double max_rel_diff(const torch::Tensor& a, const torch::Tensor& b) {
  const auto da = a.to(torch::kDouble), db = b.to(torch::kDouble);
  return ((da - db).abs() / db.abs().clamp_min(1e-12)).max().item<double>();
}

}  // namespace

TEST(SamplingParity, DdpmSchedule) {
  SDXL_REQUIRE_REFERENCE();
  const auto ref = test::vectors("ddpm");
  const sampling::NoiseSchedule s(tiny_scheduler());
  EXPECT_LE(max_rel_diff(s.alphas_cumprod(), ref.tensor("alphas_cumprod")), 1e-6);
  const auto t = ref.tensor("timesteps"), x0 = ref.tensor("x0"), noise = ref.tensor("noise");
  EXPECT_LE(max_rel_diff(s.snr(t), ref.tensor("snr")), 1e-6);
  // Relative to the magnitude of the tensor (elements near zero make element-wise ratios meaningless).
  auto rel = [](const torch::Tensor& a, const torch::Tensor& b) {
    return test::max_abs_diff(a, b) / b.abs().max().item<double>();
  };
  EXPECT_LE(rel(s.add_noise(x0, noise, t), ref.tensor("noisy")), 1e-6);
  EXPECT_LE(rel(s.velocity(x0, noise, t), ref.tensor("velocity")), 1e-6);
}

class SamplerParity : public ::testing::TestWithParam<std::pair<const char*, int>> {};

TEST_P(SamplerParity, TimestepsSigmasAndFinalSample) {
  SDXL_REQUIRE_REFERENCE();
  const auto [name, steps] = GetParam();
  const std::string n = name;
  const auto ref = test::vectors("samplers");
  auto sampler = sampling::make_sampler(n, tiny_scheduler());
  sampler->set_timesteps(steps);

  const auto want_t = ref.tensor(n + "_timesteps");
  ASSERT_EQ(static_cast<std::int64_t>(sampler->timesteps().size()), want_t.numel());
  for (std::int64_t i = 0; i < want_t.numel(); ++i) {
    const float got = static_cast<float>(sampler->timesteps()[static_cast<std::size_t>(i)]);
    const float want = want_t[i].item<float>();
    if (n == "euler_karras") {
      // Karras timesteps are fractional, interpolated in log-sigma space by numpy in mixed
      // float32/float64: 18 of 20 match bit for bit here, two differ by one float32 ulp.
      EXPECT_LE(std::fabs(got - want), std::nextafter(want, 2 * want + 1) - want) << n << " timestep " << i;
    } else {
      EXPECT_EQ(got, want) << n << " timestep " << i;
    }
  }
  if (ref.contains(n + "_sigmas")) {
    const auto want_s = ref.tensor(n + "_sigmas");
    ASSERT_EQ(static_cast<std::int64_t>(sampler->sigmas().size()), want_s.numel());
    for (std::int64_t i = 0; i < want_s.numel(); ++i) {
      EXPECT_NEAR(sampler->sigmas()[static_cast<std::size_t>(i)], want_s[i].item<double>(), 1e-5) << n << " sigma " << i;
    }
  }
  EXPECT_NEAR(sampler->init_noise_sigma(), ref.tensor(n + "_init_noise_sigma").item<double>(), 1e-5);

  EXPECT_TENSOR_NEAR(sample_with_stand_in(*sampler, ref.tensor(n + "_init")), ref.tensor(n + "_final"), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Reference, SamplerParity,
                         ::testing::Values(std::make_pair("euler", 30), std::make_pair("dpmpp2m", 25),
                                           std::make_pair("euler_karras", 20)));

TEST(Sampling, InitialNoiseRelation) {
  SDXL_REQUIRE_REFERENCE();
  // The three loops start from the same noise scaled by init_noise_sigma.
  const auto ref = test::vectors("samplers");
  auto euler = sampling::make_sampler("euler", tiny_scheduler());
  euler->set_timesteps(30);
  EXPECT_TENSOR_NEAR(ref.tensor("dpmpp2m_init") * euler->init_noise_sigma(), ref.tensor("euler_init"), 1e-4);
}

TEST(Sampling, BadInput) {
  model::SchedulerConfig c;
  EXPECT_THROW(sampling::make_sampler("ddim", c), UsageError);
  auto s = sampling::make_sampler("euler", c);
  EXPECT_THROW(s->set_timesteps(0), UsageError);
}

// EDM bases (reference/edm-scheduler, Playground v2.5's settings): EDMEulerScheduler (20 steps)
// and EDMDPMSolverMultistepScheduler (25) against vectors/samplers_edm, driven by the same
// stand-in model with the EDM timestep c_noise = ¼·ln σ.
class EdmSamplerParity : public ::testing::TestWithParam<std::pair<const char*, int>> {};

TEST_P(EdmSamplerParity, TimestepsSigmasAndFinalSample) {
  SDXL_REQUIRE_REFERENCE();
  const auto [name, steps] = GetParam();
  const std::string n = std::string("edm_") + name;
  const auto ref = test::vectors("samplers_edm");
  const auto config = model::SchedulerConfig::load(test::reference_dir() / "edm-scheduler" / "scheduler_config.json");
  ASSERT_TRUE(config.edm());
  auto sampler = sampling::make_sampler(name, config);
  sampler->set_timesteps(steps);
  const auto want_t = ref.tensor(n + "_timesteps"), want_s = ref.tensor(n + "_sigmas");
  ASSERT_EQ(static_cast<std::int64_t>(sampler->timesteps().size()), want_t.numel());
  ASSERT_EQ(static_cast<std::int64_t>(sampler->sigmas().size()), want_s.numel());
  for (std::int64_t i = 0; i < want_t.numel(); ++i) {
    EXPECT_NEAR(sampler->timesteps()[static_cast<std::size_t>(i)], want_t[i].item<double>(), 1e-6) << "timestep " << i;
  }
  for (std::int64_t i = 0; i < want_s.numel(); ++i) {
    const double want = want_s[i].item<double>();
    EXPECT_NEAR(sampler->sigmas()[static_cast<std::size_t>(i)], want, 1e-6 * std::max(1.0, want)) << "sigma " << i;
  }
  EXPECT_NEAR(sampler->init_noise_sigma(), ref.tensor(n + "_init_noise_sigma").item<double>(), 1e-6);

  EXPECT_TENSOR_NEAR(sample_with_stand_in(*sampler, ref.tensor(n + "_init")), ref.tensor(n + "_final"), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Reference, EdmSamplerParity,
                         ::testing::Values(std::make_pair("euler", 20), std::make_pair("dpmpp2m", 25)),
                         [](const auto& info) { return std::string(info.param.first); });
