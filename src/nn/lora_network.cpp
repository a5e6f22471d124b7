#include "sdxl_dreambooth/nn/lora_network.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/util/strings.h"

#include <algorithm>
#include <set>

namespace sdxl::nn {
namespace {

bool ends_with_component(const std::string& path, const std::string& target) {
  return path == target ||
         (path.size() > target.size() && path.compare(path.size() - target.size(), target.size(), target) == 0 &&
          path[path.size() - target.size() - 1] == '.');
}

}  // namespace

LoraNetwork LoraNetwork::inject(torch::nn::Module& root, const LoraSpec& spec, at::Generator& generator,
                                const std::string& what) {
  if (spec.targets.empty()) throw UsageError("no LoRA targets given for the " + what);
  for (auto& p : root.parameters()) p.set_requires_grad(false);
  LoraNetwork net;
  net.spec_ = spec;
  std::set<std::string> matched, matched_blocks;
  for (const auto& item : root.named_modules("", /*include_self=*/false)) {
    auto linear = std::dynamic_pointer_cast<LoraCompatibleLinearImpl>(item.value());
    auto conv = std::dynamic_pointer_cast<LoraCompatibleConvImpl>(item.value());
    if (!linear && !conv) continue;
    if (!spec.blocks.empty()) {
      const auto in_block = std::find_if(spec.blocks.begin(), spec.blocks.end(), [&](const std::string& b) {
        return util::starts_with(item.key(), b + ".");
      });
      if (in_block == spec.blocks.end()) continue;
      matched_blocks.insert(*in_block);
    }
    for (const auto& target : spec.targets) {
      if (!ends_with_component(item.key(), target)) continue;
      matched.insert(target);
      if (conv) {
        net.add_conv(item.key(), conv, generator);
        break;
      }
      linear->add_lora(spec.rank, spec.alpha, generator);
      if (spec.dora) linear->add_dora();
      linear->lora_dropout = spec.dropout;
      net.paths_.push_back(item.key());
      net.modules_.emplace_back(linear);
      break;
    }
  }
  for (const auto& block : spec.blocks) {
    if (!matched_blocks.count(block)) {
      throw UsageError("lora.blocks: \"" + block + "\" is no block of the " + what + " with a LoRA target in it",
                       "give module-path prefixes such as up_blocks.0.attentions.0 or mid_block");
    }
  }
  for (const auto& target : spec.targets) {
    if (!matched.count(target) && !(spec.preset && !spec.blocks.empty())) {
      const bool text = what.find("text") != std::string::npos;
      throw UsageError(std::string(text ? "lora.text_encoder_targets" : "lora.targets") + ": \"" + target +
                           "\" matches no layer of the " + what +
                           (spec.blocks.empty() ? std::string() : " inside lora.blocks"),
                       text ? "the text encoders' layers are named q_proj, k_proj, v_proj, out_proj, fc1, fc2"
                            : "the UNet's layers are named to_q, to_k, to_v, to_out.0, proj_in, proj_out, "
                              "ff.net.0.proj, ff.net.2, conv1, conv2, conv_shortcut, time_emb_proj, "
                              "downsamplers.0.conv, upsamplers.0.conv");
    }
  }
  return net;
}

void LoraNetwork::add_conv(const std::string& path, LoraCompatibleConv conv, at::Generator& generator) {
  if (spec_.dora) {
    throw UsageError("lora.use_dora: DoRA on a convolution (" + path + ") is not supported",
                     "train DoRA on the linear layers (lora.preset = \"attention\" or \"kohya\"), or LoCon "
                     "without DoRA");
  }
  const bool wide = conv->shape().kernel > 1;
  conv->add_lora(wide ? spec_.conv_rank : spec_.rank, wide ? spec_.conv_alpha : spec_.alpha, generator);
  conv->lora_dropout = spec_.dropout;
  conv_paths_.push_back(path);
  conv_modules_.push_back(conv);
}

std::vector<std::pair<std::string, torch::Tensor>> LoraNetwork::named_parameters() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  out.reserve(params_per_module() * modules_.size() + 2 * conv_modules_.size());
  for (std::size_t i = 0; i < modules_.size(); ++i) {
    out.emplace_back(paths_[i] + ".lora_A.weight", modules_[i]->lora_A->weight);
    out.emplace_back(paths_[i] + ".lora_B.weight", modules_[i]->lora_B->weight);
    if (spec_.dora) out.emplace_back(paths_[i] + ".lora_magnitude_vector", modules_[i]->lora_magnitude);
  }
  for (std::size_t i = 0; i < conv_modules_.size(); ++i) {
    out.emplace_back(conv_paths_[i] + ".lora_A.weight", conv_modules_[i]->lora_A->weight);
    out.emplace_back(conv_paths_[i] + ".lora_B.weight", conv_modules_[i]->lora_B->weight);
  }
  return out;
}

std::vector<torch::Tensor> LoraNetwork::parameters() const {
  std::vector<torch::Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

std::int64_t LoraNetwork::num_parameters() const {
  std::int64_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

void LoraNetwork::load(const std::map<std::string, torch::Tensor>& tensors, const std::string& source) {
  const auto params = named_parameters();
  std::set<std::string> expected;
  for (const auto& [name, param] : params) {
    expected.insert(name);
    auto it = tensors.find(name);
    if (it == tensors.end()) throw Error(source + ": LoRA tensor \"" + name + "\" is missing");
    if (it->second.sizes() != param.sizes()) {
      throw Error(source + ": LoRA tensor \"" + name + "\" has shape " + util::shape_string(it->second.sizes().vec()) +
                  ", expected " + util::shape_string(param.sizes().vec()),
                  "was it trained with another lora.rank or model?");
    }
  }
  for (const auto& [name, t] : tensors) {
    if (!expected.count(name)) throw Error(source + ": \"" + name + "\" is not a LoRA tensor of this model");
  }
  torch::NoGradGuard no_grad;
  for (const auto& [name, param] : params) param.copy_(tensors.at(name));
}

void LoraNetwork::set_scale(double scale) {
  for (auto& m : modules_) m->lora_scale = scale;
  for (auto& m : conv_modules_) m->lora_scale = scale;
}

}  // namespace sdxl::nn
