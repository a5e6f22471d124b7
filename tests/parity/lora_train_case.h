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
  bool dora = false;  // peft's use_dora: a magnitude per output feature is trained too
  // EDM-style training: "euler" (tiny-sdxl's schedule), "euler_v" (the same, v-prediction) or
  // "edm_base" (reference/edm-scheduler); nullptr: DDPM.
  const char* edm = nullptr;
};

// gtest prints parameters in test names; a case is known by its name.
inline void PrintTo(const LoraTrainCase& c, std::ostream* os) { *os << c.name; }

// plain, prior_snr (prior preservation + SNR-γ 5), clipped (max_grad_norm 0.01), dora (DoRA
// adapters, vectors/lora_train_dora), edm_sdxl_euler, edm_sdxl_euler_v, edm_edm_base
// (vectors/lora_train_edm_*: the schedule's σ and timesteps of the given indices are checked too).
std::vector<LoraTrainCase> lora_train_cases();

// Runs the case's two steps with the UNet and LoRA in float32 on `device`, the way
// train_step.cpp does (one flat gradient, clipped, AdamW on it), and checks loss, gradient
// norm, every gradient and every weight at the reference README's tolerances (gtest
// expectations).
void check_lora_train_steps(const LoraTrainCase& c, const torch::Device& device);

// diffusers' --train_text_encoder (vectors/lora_train_text_encoder): two steps through
// TrainedAdapters (UNet and both text encoders, three AdamW groups), prompts re-encoded each
// step; the adapters of text_encoder's last layer get no gradient and do not move.
void check_text_encoder_lora_steps(const torch::Device& device);

// prodigy_default (prodigyopt's defaults) and prodigy_bias_warmup (beta3 0.99, bias
// correction, safeguard warmup): twelve Prodigy steps (lr 1, weight decay 1e-4, clipping 1.0).
struct ProdigyCase {
  const char* name;
  std::optional<double> beta3;
  bool use_bias_correction;
  bool safeguard_warmup;
};
inline void PrintTo(const ProdigyCase& c, std::ostream* os) { *os << c.name; }
std::vector<ProdigyCase> prodigy_cases();

// Runs the twelve steps from the reference's inputs and checks loss, d after every step and the
// weights' change from init at the reference README's tolerances.
void check_prodigy_steps(const ProdigyCase& c, const torch::Device& device);

}  // namespace sdxl::test
