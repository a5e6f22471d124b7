#include "sdxl_dreambooth/nn/embeddings.h"

#include <cmath>

namespace sdxl::nn {

torch::Tensor timestep_embedding(const torch::Tensor& timesteps, std::int64_t dim, bool flip_sin_to_cos,
                                 double downscale_freq_shift, double max_period) {
  const std::int64_t half = dim / 2;
  const auto opts = torch::TensorOptions().dtype(torch::kFloat).device(timesteps.device());
  torch::Tensor exponent = -std::log(max_period) * torch::arange(0, half, opts);
  exponent = exponent / (static_cast<double>(half) - downscale_freq_shift);
  torch::Tensor emb = timesteps.to(torch::kFloat).unsqueeze(1) * torch::exp(exponent).unsqueeze(0);
  emb = flip_sin_to_cos ? torch::cat({torch::cos(emb), torch::sin(emb)}, -1) : torch::cat({torch::sin(emb), torch::cos(emb)}, -1);
  if (dim % 2 == 1) emb = torch::nn::functional::pad(emb, torch::nn::functional::PadFuncOptions({0, 1, 0, 0}));
  return emb;
}

TimestepEmbeddingImpl::TimestepEmbeddingImpl(std::int64_t in_channels, std::int64_t time_embed_dim) {
  linear_1 = register_module("linear_1", torch::nn::Linear(in_channels, time_embed_dim));
  linear_2 = register_module("linear_2", torch::nn::Linear(time_embed_dim, time_embed_dim));
}

}  // namespace sdxl::nn
