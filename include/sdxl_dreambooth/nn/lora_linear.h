// A Linear layer that can carry a LoRA adapter (diffusers' LoRACompatibleLinear with peft's
// LoraLayer semantics): y = W x + b + scale · (alpha / rank) · B(A x). The adapter's
// parameters are registered as the submodules `lora_A` and `lora_B`, so their names are
// `<module path>.lora_A.weight` / `.lora_B.weight`, and the base `weight`/`bias` keep the
// checkpoint's names.
//
// With DoRA (peft 0.10's use_dora) the adapter also has a trainable magnitude m per output
// feature, registered as `lora_magnitude_vector`, and the layer computes
//   y = g ⊙ (W x + s·B A x) + b,  g = m / ‖W + s·B A‖_row (the norm detached, DoRA paper §4.3),
// which is peft's base(x) + (g - 1) ⊙ W x + g ⊙ s·B A x rearranged. The norm is per weight, not
// per token: it comes from ‖W‖_row² (kept), W Aᵀ and A Aᵀ, never from an [out, in] product.
#pragma once

#include <torch/torch.h>

namespace sdxl::nn {

class LoraCompatibleLinearImpl : public torch::nn::Module {
 public:
  LoraCompatibleLinearImpl(std::int64_t in_features, std::int64_t out_features, bool bias = true);

  torch::Tensor forward(const torch::Tensor& x);
  // The layer's output without bias from wx = W x: wx + scale · (alpha / rank) · B(A x), or
  // DoRA's form; wx itself without an adapter or at lora_scale 0.
  torch::Tensor adapt(const torch::Tensor& wx, const torch::Tensor& x) const;
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
  // Makes the adapter a DoRA one: m = ‖W + s·B A‖_row (= ‖W‖_row while B is zero).
  void add_dora();
  bool has_dora() const { return lora_magnitude.defined(); }
  // The factors DoRA applies to one pass, float32 [out]: y = base ⊙ (W x) + s·(adapter ⊙ B)(A x)
  // + b. At lora_scale t the layer moves from W toward the DoRA weight by t, as ComfyUI applies
  // a DoRA file at strength t: base = 1 - t + t·g, adapter = t·g. Gradients reach m.
  struct DoraFactors {
    torch::Tensor base, adapter;
  };
  DoraFactors dora_factors() const;
  // ‖W + s·B A‖_row in float32, detached.
  torch::Tensor dora_weight_norm() const;
  std::int64_t lora_rank() const { return rank_; }
  double lora_alpha() const { return alpha_; }
  // Folds scale · (alpha / rank) · B A into W and removes the adapter (inference). With DoRA,
  // W becomes W + scale · (g ⊙ (W + s·B A) - W).
  void merge_lora(double scale = 1.0);

  std::int64_t in_features() const { return in_; }
  std::int64_t out_features() const { return out_; }

  torch::Tensor weight, bias;
  torch::nn::Linear lora_A{nullptr}, lora_B{nullptr};
  torch::Tensor lora_magnitude;  // DoRA's m, [out] float32; undefined without DoRA
  double lora_scale = 1.0;  // run-time multiplier of the adapter (generate --lora-scale)
  // peft's lora_dropout: the adapter (and DoRA's magnitude term) reads dropout(x) in training
  // mode (module->train()); the base W x reads x.
  double lora_dropout = 0.0;
  bool dropout_active() const { return lora_dropout > 0.0 && is_training() && has_lora(); }
  // Set by AdapterCast (nn/adapter_cast.h) for one forward pass: A and B already in the
  // activations' dtype, views of one tensor cast once for every adapter. Undefined otherwise.
  torch::Tensor cast_A, cast_B;

 private:
  std::int64_t in_, out_;
  std::int64_t rank_ = 0;
  double alpha_ = 0.0;
  torch::Tensor weight_sq_norm_;  // ‖W‖_row², float32, taken by add_dora (W is frozen)
};
TORCH_MODULE(LoraCompatibleLinear);

}  // namespace sdxl::nn
