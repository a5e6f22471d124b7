#include "sdxl_dreambooth/model/lora_export.h"

#include "sdxl_dreambooth/io/safetensors_torch.h"

namespace sdxl::model {

namespace {

std::vector<std::pair<std::string, torch::Tensor>> lora_tensors(const nn::LoraNetwork& network,
                                                               const std::string& prefix, const char* down_suffix,
                                                               const char* up_suffix) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  const double scale = network.spec().alpha / static_cast<double>(network.spec().rank);
  for (std::size_t i = 0; i < network.size(); ++i) {
    const auto& m = network.modules()[i];
    const std::string base = prefix + "." + network.module_paths()[i];
    torch::Tensor down = m->lora_A->weight.detach().to(torch::kCPU, torch::kFloat).contiguous();
    torch::Tensor up = m->lora_B->weight.detach().to(torch::kCPU, torch::kFloat);
    if (scale != 1.0) up = up * scale;
    out.emplace_back(base + down_suffix, down);
    out.emplace_back(base + up_suffix, up.contiguous());
  }
  return out;
}

}  // namespace

std::vector<std::pair<std::string, torch::Tensor>> diffusers_lora_tensors(const nn::LoraNetwork& network,
                                                                         const std::string& prefix) {
  return lora_tensors(network, prefix, ".lora.down.weight", ".lora.up.weight");
}

std::vector<std::pair<std::string, torch::Tensor>> diffusers_text_encoder_lora_tensors(const nn::LoraNetwork& network,
                                                                                      const std::string& prefix) {
  return lora_tensors(network, prefix, ".lora_linear_layer.down.weight", ".lora_linear_layer.up.weight");
}

void write_diffusers_lora(const std::string& path, const nn::LoraNetwork& unet, const nn::LoraNetwork* text_encoder,
                          const nn::LoraNetwork* text_encoder_2, const std::map<std::string, std::string>& metadata) {
  auto tensors = diffusers_lora_tensors(unet, "unet");
  for (const auto& [net, prefix] : {std::pair{text_encoder, "text_encoder"}, std::pair{text_encoder_2, "text_encoder_2"}}) {
    if (!net) continue;
    for (auto& t : diffusers_text_encoder_lora_tensors(*net, prefix)) tensors.push_back(std::move(t));
  }
  io::write_safetensors(path, tensors, metadata);
}

}  // namespace sdxl::model
