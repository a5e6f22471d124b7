#include "sdxl_dreambooth/sampling/sampler.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/sampling/edm_samplers.h"
#include "sdxl_dreambooth/sampling/noise_schedule.h"
#include "sdxl_dreambooth/sampling/numpy_linspace.h"
#include "sdxl_dreambooth/util/to_device.h"

#include <algorithm>
#include <cmath>

namespace sdxl::sampling {

namespace {

// Scalars are float32 0-dim tensors wherever diffusers keeps them in float32 tensors, so
// the arithmetic rounds the same way.
torch::Tensor f32(double v) { return torch::tensor(static_cast<float>(v), torch::kFloat); }
// The same on `device`, uploaded without making the host wait for the device's queue (a plain
// .to(cuda) would, every sampling step).
torch::Tensor f32(double v, const torch::Device& device) { return util::to_device_async(f32(v), device); }

// ref: numpy.interp with xp = 0..n-1.
double interp(double x, const std::vector<float>& fp) {
  if (x <= 0) return fp.front();
  const double last = static_cast<double>(fp.size() - 1);
  if (x >= last) return fp.back();
  const auto i = static_cast<std::size_t>(std::floor(x));
  const double w = x - static_cast<double>(i);
  return static_cast<double>(fp[i]) + w * (static_cast<double>(fp[i + 1]) - static_cast<double>(fp[i]));
}

std::vector<float> to_vector(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kFloat).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

// The training sigmas sqrt((1 - ᾱ) / ᾱ) in float32, and their logs.
struct TrainSigmas {
  std::vector<float> sigmas, log_sigmas;
  explicit TrainSigmas(const model::SchedulerConfig& c) {
    const torch::Tensor ac = NoiseSchedule(c).alphas_cumprod();
    const torch::Tensor s = ((1.0 - ac) / ac).pow(0.5);
    sigmas = to_vector(s);
    // numpy's float32 log (correctly rounded, like glibc's logf), not LibTorch's vectorized one.
    for (float v : sigmas) log_sigmas.push_back(std::log(v));
  }
};

// ref: _convert_to_karras (rho = 7), in float64 as diffusers computes it.
void to_karras(std::vector<double>& sig) {
  const double rho = 7.0, smin = sig.back(), smax = sig.front();
  const double min_inv = std::pow(smin, 1.0 / rho), max_inv = std::pow(smax, 1.0 / rho);
  const auto ramp = np_linspace(0.0, 1.0, static_cast<std::int64_t>(sig.size()));
  for (std::size_t i = 0; i < sig.size(); ++i) sig[i] = std::pow(max_inv + ramp[i] * (min_inv - max_inv), rho);
}

// ref: EulerDiscreteScheduler._sigma_to_t (float64 with float32 log_sigmas).
double sigma_to_t(double sigma, const std::vector<float>& log_sigmas) {
  const double log_sigma = std::log(std::max(sigma, 1e-10));
  std::size_t count = 0;  // cumsum(dists >= 0).argmax(): the last index with log_sigmas <= log_sigma
  std::size_t low = 0;
  for (std::size_t i = 0; i < log_sigmas.size(); ++i) {
    if (log_sigma - static_cast<double>(log_sigmas[i]) >= 0) {
      ++count;
      low = i;
    }
  }
  if (count == 0) low = 0;
  low = std::min(low, log_sigmas.size() - 2);
  // numpy (< 2.0) value-based casting: low, high are float32 arrays and log_sigma a float64
  // scalar, so w is computed entirely in float32; t is then float64 (float32 x int64).
  const float lo = log_sigmas[low], hi = log_sigmas[low + 1];
  const float wf = std::clamp((lo - static_cast<float>(log_sigma)) / (lo - hi), 0.0f, 1.0f);
  const double one_minus_w = static_cast<double>(1.0f - wf), w = static_cast<double>(wf);
  return one_minus_w * static_cast<double>(low) + w * static_cast<double>(low + 1);
}

class EulerDiscrete final : public Sampler {
 public:
  EulerDiscrete(const model::SchedulerConfig& c, bool karras) : config_(c), karras_(karras), train_(c) {}

  void set_timesteps(std::int64_t n) override {
    if (n < 1) throw UsageError("sampling steps must be at least 1, got " + std::to_string(n));
    const std::int64_t T = config_.num_train_timesteps;
    std::vector<double> ts;
    // ref: EulerDiscreteScheduler.set_timesteps (diffusers 0.27).
    if (config_.timestep_spacing == "linspace") {
      const auto lin = np_linspace(0.0, static_cast<double>(T - 1), n);
      for (auto it = lin.rbegin(); it != lin.rend(); ++it) ts.push_back(static_cast<float>(*it));
    } else if (config_.timestep_spacing == "leading") {
      const std::int64_t ratio = T / n;
      for (std::int64_t i = n - 1; i >= 0; --i) ts.push_back(static_cast<double>(i * ratio + config_.steps_offset));
    } else {
      const double ratio = static_cast<double>(T) / n;
      for (double t = T; t > 0 && static_cast<std::int64_t>(ts.size()) < n; t -= ratio) ts.push_back(std::round(t) - 1);
    }
    std::vector<double> sig;
    for (double t : ts) sig.push_back(interp(t, train_.sigmas));
    if (karras_) {
      to_karras(sig);
      for (std::size_t i = 0; i < ts.size(); ++i) ts[i] = sigma_to_t(sig[i], train_.log_sigmas);
    }
    timesteps_.clear();
    sigmas_.clear();
    for (double t : ts) timesteps_.push_back(static_cast<float>(t));
    for (double s : sig) sigmas_.push_back(static_cast<float>(s));
    sigmas_.push_back(0.0);
  }

  const std::vector<double>& timesteps() const override { return timesteps_; }
  const std::vector<double>& sigmas() const override { return sigmas_; }

  double init_noise_sigma() const override {
    const double max_sigma = *std::max_element(sigmas_.begin(), sigmas_.end());
    if (config_.timestep_spacing == "linspace" || config_.timestep_spacing == "trailing") return max_sigma;
    return (f32(max_sigma).pow(2) + 1).pow(0.5).item<float>();
  }

  torch::Tensor scale_model_input(const torch::Tensor& sample, std::size_t i) const override {
    const torch::Tensor sigma = f32(sigmas_.at(i), sample.device());
    return sample / (sigma.pow(2) + 1).pow(0.5);
  }

  torch::Tensor step(const torch::Tensor& model_output, std::size_t i, const torch::Tensor& sample_in) override {
    const torch::Tensor x = sample_in.to(torch::kFloat), out = model_output.to(torch::kFloat);
    const torch::Tensor sigma = f32(sigmas_.at(i), x.device()), next = f32(sigmas_.at(i + 1), x.device());
    torch::Tensor pred_x0;
    if (config_.prediction_type == "v_prediction") {
      pred_x0 = out * (-sigma / (sigma.pow(2) + 1).pow(0.5)) + x / (sigma.pow(2) + 1);
    } else {
      pred_x0 = x - sigma * out;
    }
    const torch::Tensor derivative = (x - pred_x0) / sigma;
    return (x + derivative * (next - sigma)).to(model_output.scalar_type());
  }

 private:
  model::SchedulerConfig config_;
  bool karras_;
  TrainSigmas train_;
  std::vector<double> timesteps_, sigmas_;
};

// DPMSolverMultistepScheduler with its defaults: dpmsolver++, order 2, midpoint,
// lower_order_final, final sigma 0.
class DpmSolverMultistep final : public Sampler {
 public:
  explicit DpmSolverMultistep(const model::SchedulerConfig& c) : config_(c), train_(c) {}

  void set_timesteps(std::int64_t n) override {
    if (n < 1) throw UsageError("sampling steps must be at least 1, got " + std::to_string(n));
    const std::int64_t last = config_.num_train_timesteps;  // lambda_min_clipped = -inf
    std::vector<std::int64_t> ts;
    // ref: DPMSolverMultistepScheduler.set_timesteps (diffusers 0.27).
    if (config_.timestep_spacing == "linspace") {
      const auto lin = np_linspace(0.0, static_cast<double>(last - 1), n + 1);
      for (std::int64_t i = n; i >= 1; --i) ts.push_back(static_cast<std::int64_t>(std::nearbyint(lin[static_cast<std::size_t>(i)])));
    } else if (config_.timestep_spacing == "leading") {
      const std::int64_t ratio = last / (n + 1);
      for (std::int64_t i = n; i >= 1; --i) ts.push_back(i * ratio + config_.steps_offset);
    } else {
      const double ratio = static_cast<double>(last) / n;
      for (double t = last; t > 0 && static_cast<std::int64_t>(ts.size()) < n; t -= ratio) {
        ts.push_back(static_cast<std::int64_t>(std::nearbyint(t)) - 1);
      }
    }
    timesteps_.assign(ts.begin(), ts.end());
    std::vector<double> sig;
    for (auto t : ts) sig.push_back(interp(static_cast<double>(t), train_.sigmas));
    if (config_.use_karras_sigmas) {
      to_karras(sig);
      for (std::size_t i = 0; i < sig.size(); ++i) timesteps_[i] = std::nearbyint(sigma_to_t(sig[i], train_.log_sigmas));
    }
    sigmas_.clear();
    for (double s : sig) sigmas_.push_back(static_cast<float>(s));
    sigmas_.push_back(0.0);
    outputs_.clear();
    lower_order_nums_ = 0;
  }

  const std::vector<double>& timesteps() const override { return timesteps_; }
  const std::vector<double>& sigmas() const override { return sigmas_; }
  double init_noise_sigma() const override { return 1.0; }
  torch::Tensor scale_model_input(const torch::Tensor& sample, std::size_t) const override { return sample; }

  torch::Tensor step(const torch::Tensor& model_output, std::size_t i, const torch::Tensor& sample_in) override {
    const torch::Tensor x = sample_in.to(torch::kFloat);
    const auto dev = x.device();
    auto alpha_sigma = [&](std::size_t k) {
      const torch::Tensor s = f32(sigmas_.at(k), dev);
      const torch::Tensor alpha = 1.0 / (s.pow(2) + 1).pow(0.5);
      return std::pair<torch::Tensor, torch::Tensor>{alpha, s * alpha};
    };
    // convert_model_output: the x0 prediction.
    auto [alpha_s0, sigma_s0] = alpha_sigma(i);
    const torch::Tensor out = model_output.to(torch::kFloat);
    const torch::Tensor x0 = config_.prediction_type == "v_prediction" ? alpha_s0 * x - sigma_s0 * out
                                                                       : (x - sigma_s0 * out) / alpha_s0;
    outputs_.push_back(x0);
    if (outputs_.size() > 2) outputs_.erase(outputs_.begin());
    const bool lower_order_final = i + 1 == timesteps_.size();  // final sigma is zero
    auto [alpha_t, sigma_t] = alpha_sigma(i + 1);
    const torch::Tensor lambda_t = torch::log(alpha_t) - torch::log(sigma_t);
    const torch::Tensor lambda_s0 = torch::log(alpha_s0) - torch::log(sigma_s0);
    const torch::Tensor h = lambda_t - lambda_s0;
    torch::Tensor prev;
    if (lower_order_nums_ < 1 || lower_order_final) {
      prev = (sigma_t / sigma_s0) * x - (alpha_t * (torch::exp(-h) - 1.0)) * x0;
    } else {
      auto [alpha_s1, sigma_s1] = alpha_sigma(i - 1);
      const torch::Tensor lambda_s1 = torch::log(alpha_s1) - torch::log(sigma_s1);
      const torch::Tensor r0 = (lambda_s0 - lambda_s1) / h;
      const torch::Tensor& m0 = outputs_[1];
      const torch::Tensor& m1 = outputs_[0];
      const torch::Tensor d1 = (1.0 / r0) * (m0 - m1);
      prev = (sigma_t / sigma_s0) * x - (alpha_t * (torch::exp(-h) - 1.0)) * m0 -
             0.5 * (alpha_t * (torch::exp(-h) - 1.0)) * d1;
    }
    if (lower_order_nums_ < 2) ++lower_order_nums_;
    return prev.to(model_output.scalar_type());
  }

 private:
  model::SchedulerConfig config_;
  TrainSigmas train_;
  std::vector<double> timesteps_, sigmas_;
  std::vector<torch::Tensor> outputs_;
  int lower_order_nums_ = 0;
};

}  // namespace

std::unique_ptr<Sampler> make_sampler(const std::string& name, const model::SchedulerConfig& config) {
  if (config.edm()) return make_edm_sampler(name, config);
  if (name == "euler") return std::make_unique<EulerDiscrete>(config, false);
  if (name == "euler_karras") return std::make_unique<EulerDiscrete>(config, true);
  if (name == "dpmpp2m") return std::make_unique<DpmSolverMultistep>(config);
  throw UsageError("unknown scheduler '" + name + "': expected dpmpp2m, euler or euler_karras");
}

}  // namespace sdxl::sampling
