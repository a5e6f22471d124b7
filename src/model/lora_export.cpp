#include "sdxl_dreambooth/model/lora_export.h"

#include "sdxl_dreambooth/io/safetensors_torch.h"

namespace sdxl::model {

std::vector<std::pair<std::string, torch::Tensor>> diffusers_lora_tensors(const nn::LoraNetwork& network,
                                                                         const std::string& prefix) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  const double scale = network.spec().alpha / static_cast<double>(network.spec().rank);
  for (std::size_t i = 0; i < network.size(); ++i) {
    const auto& m = network.modules()[i];
    const std::string base = prefix + "." + network.module_paths()[i];
    torch::Tensor down = m->lora_A->weight.detach().to(torch::kCPU, torch::kFloat).contiguous();
    torch::Tensor up = m->lora_B->weight.detach().to(torch::kCPU, torch::kFloat);
    if (scale != 1.0) up = up * scale;
    out.emplace_back(base + ".lora.down.weight", down);
    out.emplace_back(base + ".lora.up.weight", up.contiguous());
  }
  return out;
}

void write_diffusers_lora(const std::string& path, const nn::LoraNetwork& unet,
                          const std::map<std::string, std::string>& metadata) {
  io::write_safetensors(path, diffusers_lora_tensors(unet, "unet"), metadata);
}

}  // namespace sdxl::model
