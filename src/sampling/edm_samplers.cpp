#include "sdxl_dreambooth/sampling/edm_samplers.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/sampling/numpy_linspace.h"
#include "sdxl_dreambooth/util/to_device.h"

#include <cmath>

namespace sdxl::sampling {
namespace {

// A float32 scalar on `device` (diffusers keeps sigmas in float32 tensors), uploaded without
// making the host wait for the device.
torch::Tensor scalar(double v, const torch::Device& device) {
  return util::to_device_async(torch::tensor(static_cast<float>(v), torch::kFloat), device);
}

// What both EDM solvers share: the schedule, the input scaling and the x₀ prediction.
class EdmSampler : public Sampler {
 public:
  explicit EdmSampler(const model::SchedulerConfig& c) : config_(c) {}

  void set_timesteps(std::int64_t n) override {
    if (n < 1) throw UsageError("sampling steps must be at least 1, got " + std::to_string(n));
    // ref: EDMEulerScheduler.set_timesteps: a float64 numpy ramp, sigmas cast to float32,
    // timesteps = precondition_noise(sigmas) = 0.25 · log σ in float32.
    const double min_inv = std::pow(config_.sigma_min, 1.0 / config_.rho);
    const double max_inv = std::pow(config_.sigma_max, 1.0 / config_.rho);
    std::vector<float> sig;
    for (double r : np_linspace(0.0, 1.0, n)) sig.push_back(static_cast<float>(std::pow(max_inv + r * (min_inv - max_inv), config_.rho)));
    const torch::Tensor t = 0.25 * torch::log(torch::tensor(sig, torch::kFloat));
    timesteps_.assign(t.data_ptr<float>(), t.data_ptr<float>() + n);
    sigmas_.assign(sig.begin(), sig.end());
    sigmas_.push_back(0.0);  // final_sigmas_type "zero"
    reset();
  }

  const std::vector<double>& timesteps() const override { return timesteps_; }
  const std::vector<double>& sigmas() const override { return sigmas_; }
  double init_noise_sigma() const override { return std::sqrt(config_.sigma_max * config_.sigma_max + 1); }

  torch::Tensor scale_model_input(const torch::Tensor& sample, std::size_t i) const override {
    // ref: precondition_inputs.
    const torch::Tensor sigma = scalar(sigmas_.at(i), sample.device());
    return sample * (1 / (sigma.pow(2) + config_.sigma_data * config_.sigma_data).pow(0.5));
  }

 protected:
  virtual void reset() {}

  // ref: precondition_outputs: x₀ = c_skip · sample + c_out · output.
  torch::Tensor denoised(const torch::Tensor& sample, const torch::Tensor& output, const torch::Tensor& sigma) const {
    const double sd = config_.sigma_data;
    const torch::Tensor c_skip = sd * sd / (sigma.pow(2) + sd * sd);
    torch::Tensor c_out = sigma * sd / (sigma.pow(2) + sd * sd).pow(0.5);
    if (config_.prediction_type == "v_prediction") c_out = -c_out;
    return c_skip * sample + c_out * output;
  }

  model::SchedulerConfig config_;
  std::vector<double> timesteps_, sigmas_;
};

// ref: EDMEulerScheduler.step without churn (s_churn 0, its default).
class EdmEuler final : public EdmSampler {
 public:
  using EdmSampler::EdmSampler;

  torch::Tensor step(const torch::Tensor& model_output, std::size_t i, const torch::Tensor& sample_in) override {
    const torch::Tensor x = sample_in.to(torch::kFloat);
    const torch::Tensor sigma = scalar(sigmas_.at(i), x.device());
    const torch::Tensor derivative = (x - denoised(x, model_output, sigma)) / sigma;
    const torch::Tensor dt = scalar(sigmas_.at(i + 1), x.device()) - sigma;
    return (x + derivative * dt).to(model_output.scalar_type());
  }
};

// ref: EDMDPMSolverMultistepScheduler.step with dpmsolver++, order 2, midpoint: α = 1, σ_t = σ
// (inputs are preconditioned), λ = -ln σ; the last step is first order onto σ = 0.
class EdmDpmSolverMultistep final : public EdmSampler {
 public:
  using EdmSampler::EdmSampler;

  torch::Tensor step(const torch::Tensor& model_output, std::size_t i, const torch::Tensor& sample) override {
    const auto dev = sample.device();
    const torch::Tensor sigma_s0 = scalar(sigmas_.at(i), dev), sigma_t = scalar(sigmas_.at(i + 1), dev);
    const torch::Tensor x0 = denoised(sample, model_output, sigma_s0);
    outputs_.push_back(x0);
    if (outputs_.size() > 2) outputs_.erase(outputs_.begin());
    const bool lower_order_final = i + 1 == timesteps_.size();  // final sigma is zero
    const torch::Tensor lambda_t = -torch::log(sigma_t), lambda_s0 = -torch::log(sigma_s0);
    const torch::Tensor h = lambda_t - lambda_s0;
    const torch::Tensor phi = torch::exp(-h) - 1.0;  // α_t · (e^{-h} - 1) with α_t = 1
    torch::Tensor prev;
    if (lower_order_nums_ < 1 || lower_order_final) {
      prev = (sigma_t / sigma_s0) * sample - phi * x0;
    } else {
      const torch::Tensor lambda_s1 = -torch::log(scalar(sigmas_.at(i - 1), dev));
      const torch::Tensor r0 = (lambda_s0 - lambda_s1) / h;
      const torch::Tensor d1 = (1.0 / r0) * (outputs_[1] - outputs_[0]);
      prev = (sigma_t / sigma_s0) * sample - phi * outputs_[1] - 0.5 * phi * d1;
    }
    if (lower_order_nums_ < 2) ++lower_order_nums_;
    return prev;
  }

 private:
  void reset() override {
    outputs_.clear();
    lower_order_nums_ = 0;
  }

  std::vector<torch::Tensor> outputs_;
  int lower_order_nums_ = 0;
};

}  // namespace

std::unique_ptr<Sampler> make_edm_sampler(const std::string& name, const model::SchedulerConfig& config) {
  if (name == "euler" || name == "euler_karras") return std::make_unique<EdmEuler>(config);
  if (name == "dpmpp2m") return std::make_unique<EdmDpmSolverMultistep>(config);
  throw UsageError("unknown scheduler '" + name + "': expected dpmpp2m, euler or euler_karras");
}

}  // namespace sdxl::sampling
