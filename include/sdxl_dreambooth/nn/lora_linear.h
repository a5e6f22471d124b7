// A Linear layer that can carry a LoRA adapter (diffusers' LoRACompatibleLinear with peft's
// LoraLayer semantics): y = W x + b + scale · (alpha / rank) · B(A x). The adapter's
// parameters are registered as the submodules `lora_A` and `lora_B`, so their names are
// `<module path>.lora_A.weight` / `.lora_B.weight`, and the base `weight`/`bias` keep the
// checkpoint's names.
#pragma once

#include <torch/torch.h>

namespace sdxl::nn {

class LoraCompatibleLinearImpl : public torch::nn::Module {
 public:
  LoraCompatibleLinearImpl(std::int64_t in_features, std::int64_t out_features, bool bias = true);

  torch::Tensor forward(const torch::Tensor& x);
  // The adapter's term scale · (alpha / rank) · B(A x) alone, in x's dtype; undefined without an
  // adapter or at lora_scale 0. forward is W x + b plus this.
  torch::Tensor lora_delta(const torch::Tensor& x) const;
  // y += scale · (alpha / rank) · a Bᵀ in place, for y = W x + b and a = A x as [rows, features]
  // in the activations' dtype: one GEMM that accumulates into y.
  void add_lora_(torch::Tensor& y, const torch::Tensor& a) const;
  // An adapter weight (float32) in the activations' dtype.
  static torch::Tensor lora_cast(const torch::Tensor& w, torch::ScalarType dtype);
  // A and B in `dtype`: the ones AdapterCast prepared for this pass when it did, else cast here.
  torch::Tensor lora_A_as(torch::ScalarType dtype) const;
  torch::Tensor lora_B_as(torch::ScalarType dtype) const;
  // scale · alpha / rank.
  double lora_scaling() const { return lora_scale * alpha_ / static_cast<double>(rank_); }

  // Adds a float32 adapter on the weight's device: A ~ N(0, (1/rank)²) (peft's "gaussian"
  // init, std = 1/rank) drawn from `generator` (a CPU generator), B = 0, so the layer's output
  // is unchanged until B trains.
  void add_lora(std::int64_t rank, double alpha, at::Generator& generator);
  void remove_lora();
  bool has_lora() const { return !lora_A.is_empty(); }
  std::int64_t lora_rank() const { return rank_; }
  double lora_alpha() const { return alpha_; }
  // Folds scale · (alpha / rank) · B A into W and removes the adapter (inference).
  void merge_lora(double scale = 1.0);

  std::int64_t in_features() const { return in_; }
  std::int64_t out_features() const { return out_; }

  torch::Tensor weight, bias;
  torch::nn::Linear lora_A{nullptr}, lora_B{nullptr};
  double lora_scale = 1.0;  // run-time multiplier of the adapter (generate --lora-scale)
  // Set by AdapterCast (nn/adapter_cast.h) for one forward pass: A and B already in the
  // activations' dtype, views of one tensor cast once for every adapter. Undefined otherwise.
  torch::Tensor cast_A, cast_B;

 private:
  std::int64_t in_, out_;
  std::int64_t rank_ = 0;
  double alpha_ = 0.0;
};
TORCH_MODULE(LoraCompatibleLinear);

}  // namespace sdxl::nn
