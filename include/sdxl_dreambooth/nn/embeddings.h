// Sinusoidal timestep projection and the timestep-embedding MLP
// (diffusers/models/embeddings.py: get_timestep_embedding, Timesteps, TimestepEmbedding).
#pragma once

#include <torch/torch.h>

namespace sdxl::nn {

// [N] timesteps -> [N, dim] float32 sinusoids; cos first when flip_sin_to_cos.
torch::Tensor timestep_embedding(const torch::Tensor& timesteps, std::int64_t dim, bool flip_sin_to_cos,
                                 double downscale_freq_shift, double max_period = 10000.0);

class TimestepEmbeddingImpl : public torch::nn::Module {
 public:
  TimestepEmbeddingImpl(std::int64_t in_channels, std::int64_t time_embed_dim);
  torch::Tensor forward(const torch::Tensor& x) { return linear_2(torch::silu(linear_1(x))); }
  torch::nn::Linear linear_1{nullptr}, linear_2{nullptr};
};
TORCH_MODULE(TimestepEmbedding);

}  // namespace sdxl::nn
