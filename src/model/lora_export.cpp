#include "sdxl_dreambooth/model/lora_export.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/io/safetensors_torch.h"
#include "sdxl_dreambooth/model/sgm_unet_names.h"
#include "sdxl_dreambooth/util/strings.h"

#include <algorithm>

namespace sdxl::model {
namespace {

std::string underscored(std::string s) {
  std::replace(s.begin(), s.end(), '.', '_');
  return s;
}

}  // namespace

LoraFormat parse_lora_format(const std::string& name) {
  if (name == "diffusers") return LoraFormat::kDiffusers;
  if (name == "kohya") return LoraFormat::kKohya;
  throw UsageError("--format: expected \"diffusers\" or \"kohya\", got " + name);
}

const char* lora_format_name(LoraFormat format) { return format == LoraFormat::kKohya ? "kohya" : "diffusers"; }

ModelLoraWeights lora_weights(const nn::LoraNetwork& network, const std::string& model, int layers_per_block) {
  ModelLoraWeights w;
  w.model = model;
  w.rank = network.spec().rank;
  w.alpha = network.spec().alpha;
  w.layers_per_block = layers_per_block;
  const auto cpu = [](const torch::Tensor& t) { return t.detach().to(torch::kCPU, torch::kFloat).contiguous(); };
  for (std::size_t i = 0; i < network.modules().size(); ++i) {
    const auto& m = network.modules()[i];
    w.adapters.push_back({network.module_paths()[i], cpu(m->lora_A->weight), cpu(m->lora_B->weight),
                          m->has_dora() ? cpu(m->lora_magnitude) : torch::Tensor(), std::nullopt});
  }
  for (std::size_t i = 0; i < network.conv_modules().size(); ++i) {
    const auto& m = network.conv_modules()[i];
    w.adapters.push_back({network.conv_paths()[i], cpu(m->lora_A->weight), cpu(m->lora_B->weight), torch::Tensor(),
                          m->lora_alpha()});
  }
  return w;
}

std::vector<std::pair<std::string, torch::Tensor>> lora_file_tensors(const std::vector<ModelLoraWeights>& models,
                                                                    LoraFormat format) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& m : models) {
    const bool unet = m.model == "unet";
    if (format == LoraFormat::kDiffusers) {
      const std::string down = unet ? ".lora.down.weight" : ".lora_linear_layer.down.weight";
      const std::string up = unet ? ".lora.up.weight" : ".lora_linear_layer.up.weight";
      for (const auto& a : m.adapters) {
        const double scale = a.alpha.value_or(m.alpha) / static_cast<double>(a.down.size(0));
        torch::Tensor u = a.up.to(torch::kFloat);
        if (scale != 1.0) u = u * scale;
        out.emplace_back(m.model + "." + a.module + down, a.down.to(torch::kFloat).contiguous());
        out.emplace_back(m.model + "." + a.module + up, u.contiguous());
        if (a.magnitude.defined()) {
          out.emplace_back(m.model + "." + a.module + ".lora_magnitude_vector", a.magnitude.contiguous());
        }
      }
      continue;
    }
    const std::string prefix = unet ? "lora_unet_" : m.model == "text_encoder" ? "lora_te1_" : "lora_te2_";
    if (unet && m.layers_per_block <= 0) {
      throw Error("kohya export: this UNet's blocks are not uniform (layers_per_block differs per level), so it has "
                  "no SGM module names; export --format diffusers instead");
    }
    for (const auto& a : m.adapters) {
      std::string path = a.module;
      if (unet) {
        const auto sgm = diffusers_to_sgm_unet_path(a.module, m.layers_per_block);
        if (!sgm) throw Error("kohya export: no SGM name for UNet module " + a.module);
        path = *sgm;
      }
      const std::string key = prefix + underscored(path);
      out.emplace_back(key + ".lora_down.weight", a.down.to(torch::kFloat).contiguous());
      out.emplace_back(key + ".lora_up.weight", a.up.to(torch::kFloat).contiguous());
      out.emplace_back(key + ".alpha", torch::tensor(static_cast<float>(a.alpha.value_or(m.alpha))));
      // LyCORIS's output-axis layout (wd_on_out, its default since 3.2), which ComfyUI reads
      // by its shape: [out, 1].
      if (a.magnitude.defined()) out.emplace_back(key + ".dora_scale", a.magnitude.reshape({-1, 1}).contiguous());
    }
  }
  return out;
}

void write_lora_file(const std::string& path, const std::vector<ModelLoraWeights>& models, LoraFormat format,
                     std::map<std::string, std::string> metadata) {
  metadata["format"] = lora_format_name(format);
  if (format == LoraFormat::kKohya) {
    // kohya's own keys, which its tools and A1111 show.
    for (const auto& m : models) {
      if (m.model != "unet") continue;
      // DoRA files come from LyCORIS through kohya's trainer (networks.lora has no DoRA).
      const bool dora = !m.adapters.empty() && m.adapters.front().magnitude.defined();
      metadata["ss_network_module"] = dora ? "lycoris.kohya" : "networks.lora";
      if (dora) metadata["ss_network_args"] = R"({"algo": "lora", "dora_wd": "True", "wd_on_out": "True"})";
      metadata["ss_network_dim"] = std::to_string(m.rank);
      metadata["ss_network_alpha"] = util::format_number(m.alpha);
      // LoCon: kohya records conv_dim / conv_alpha in ss_network_args.
      for (const auto& a : m.adapters) {
        if (a.down.dim() != 4 || a.down.size(2) == 1 || dora) continue;
        metadata["ss_network_args"] = "{\"conv_dim\": \"" + std::to_string(a.down.size(0)) + "\", \"conv_alpha\": \"" +
                                      util::format_number(a.alpha.value_or(m.alpha)) + "\"}";
        break;
      }
      metadata["ss_base_model_version"] = "sdxl_base_v1-0";
    }
  }
  io::write_safetensors(path, lora_file_tensors(models, format), metadata);
}

}  // namespace sdxl::model
