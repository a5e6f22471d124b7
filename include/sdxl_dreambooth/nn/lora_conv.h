// A Conv2d that can carry a LoRA adapter — kohya's LoCon and peft's Conv2d LoRA:
//   y = conv(x, W, b) + scale · (alpha / rank) · conv1x1(conv(x, A), B)
// with A [rank, in, kh, kw] at the layer's stride and padding and B [out, rank, 1, 1]. The base
// parameters keep Conv2d's names (`weight`, `bias`), the adapter's are `lora_A.weight` and
// `lora_B.weight`, like LoraCompatibleLinear's. No DoRA on convolutions.
#pragma once

#include <torch/torch.h>

namespace sdxl::nn {

struct ConvShape {
  std::int64_t in = 0, out = 0, kernel = 1, stride = 1, padding = 0;
};

class LoraCompatibleConvImpl : public torch::nn::Module {
 public:
  explicit LoraCompatibleConvImpl(const ConvShape& shape, bool bias = true);

  torch::Tensor forward(const torch::Tensor& x);

  // Adds a float32 adapter on the weight's device: A ~ N(0, (1/rank)²) (peft's "gaussian" init,
  // as the linear adapters) drawn from the CPU `generator`, B = 0.
  void add_lora(std::int64_t rank, double alpha, at::Generator& generator);
  void remove_lora();
  bool has_lora() const { return !lora_A.is_empty(); }
  std::int64_t lora_rank() const { return rank_; }
  double lora_alpha() const { return alpha_; }
  double lora_scaling() const { return lora_scale * alpha_ / static_cast<double>(rank_); }
  // Folds scale · (alpha / rank) · B ∘ A (a [out, in, kh, kw] kernel) into W; removes the adapter.
  void merge_lora(double scale = 1.0);

  const ConvShape& shape() const { return shape_; }

  torch::Tensor weight, bias;
  torch::nn::Conv2d lora_A{nullptr}, lora_B{nullptr};
  double lora_scale = 1.0;
  double lora_dropout = 0.0;  // on the adapter's input, in training mode
  // Set by AdapterCast for one pass: A and B in the activations' dtype.
  torch::Tensor cast_A, cast_B;

 private:
  ConvShape shape_;
  std::int64_t rank_ = 0;
  double alpha_ = 0.0;
};
TORCH_MODULE(LoraCompatibleConv);

}  // namespace sdxl::nn
