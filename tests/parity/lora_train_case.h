// Two DreamBooth LoRA training steps on the tiny UNet against diffusers 0.27.2 + peft
// (vectors/lora_train_*), shared by the CPU parity tests and the CUDA ones.
#pragma once

#include <torch/torch.h>

#include <optional>
#include <ostream>
#include <vector>

namespace sdxl::test {

struct LoraTrainCase {
  const char* name;
  bool with_prior;
  std::optional<double> snr_gamma;
  double max_grad_norm;
};

// gtest prints parameters in test names; a case is known by its name.
inline void PrintTo(const LoraTrainCase& c, std::ostream* os) { *os << c.name; }

// plain, prior_snr (prior preservation + SNR-γ 5), clipped (max_grad_norm 0.01).
std::vector<LoraTrainCase> lora_train_cases();

// Runs the case's two steps with the UNet and LoRA in float32 on `device`, the way
// train_step.cpp does (one flat gradient, clipped, AdamW on it), and checks loss, gradient
// norm, every gradient and every weight at the reference README's tolerances (gtest
// expectations).
void check_lora_train_steps(const LoraTrainCase& c, const torch::Device& device);

}  // namespace sdxl::test
