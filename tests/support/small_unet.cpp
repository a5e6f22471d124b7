#include "support/small_unet.h"

#include "sdxl_dreambooth/model/json_config.h"

#include <nlohmann/json.hpp>

#include <string>

namespace sdxl::test {

nn::UNet2DConditionModel small_unet() {
  const auto json = nlohmann::json::parse(R"({
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"], "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
    "block_out_channels": [16, 32], "layers_per_block": 1, "transformer_layers_per_block": [1, 2],
    "attention_head_dim": [2, 4], "cross_attention_dim": 24, "norm_num_groups": 8, "use_linear_projection": true,
    "addition_embed_type": "text_time", "addition_time_embed_dim": 4, "projection_class_embeddings_input_dim": 32})");
  torch::manual_seed(0);
  return nn::UNet2DConditionModel(model::UNetConfig::from_json(model::JsonConfig(json, "test")));
}

std::vector<torch::Tensor> train_only_to_q(nn::UNet2DConditionModel& unet) {
  std::vector<torch::Tensor> trainable;
  for (auto& p : unet->named_parameters()) {
    const bool train = p.key().find("to_q.weight") != std::string::npos;
    p.value().set_requires_grad(train);
    if (train) trainable.push_back(p.value());
  }
  return trainable;
}

torch::Tensor small_unet_forward(nn::UNet2DConditionModel& unet, std::uint64_t seed) {
  torch::manual_seed(seed);
  const auto sample = torch::randn({2, 4, 8, 8}), context = torch::randn({2, 7, 24});
  const auto text = torch::randn({2, 8}), time_ids = torch::rand({2, 6}) * 64;
  return unet(sample, torch::tensor({10, 500}), context, text, time_ids);
}

}  // namespace sdxl::test
