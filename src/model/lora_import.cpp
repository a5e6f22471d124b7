#include "sdxl_dreambooth/model/lora_import.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/io/safetensors_torch.h"
#include "sdxl_dreambooth/model/sgm_unet_names.h"
#include "sdxl_dreambooth/nn/lora_linear.h"
#include "sdxl_dreambooth/util/strings.h"

#include <algorithm>
#include <cstring>

namespace sdxl::model {
namespace {

enum class Part { kDown, kUp, kMagnitude };

struct Suffix {
  const char* text;
  Part part;
  const char* format;
};

// `rest` ends with one of the known suffixes: strip it, say which half it is.
std::optional<std::pair<std::string, const Suffix*>> split_suffix(const std::string& rest) {
  static const Suffix suffixes[] = {{".lora.down.weight", Part::kDown, "diffusers"},
                                    {".lora.up.weight", Part::kUp, "diffusers"},
                                    {".lora_linear_layer.down.weight", Part::kDown, "diffusers"},
                                    {".lora_linear_layer.up.weight", Part::kUp, "diffusers"},
                                    {".lora_magnitude_vector", Part::kMagnitude, "diffusers"},
                                    {".lora_magnitude_vector.weight", Part::kMagnitude, "peft"},
                                    {".lora_A.weight", Part::kDown, "peft"},
                                    {".lora_B.weight", Part::kUp, "peft"},
                                    {".lora_down.weight", Part::kDown, "kohya"},
                                    {".lora_up.weight", Part::kUp, "kohya"},
                                    {".dora_scale", Part::kMagnitude, "kohya"}};
  for (const auto& s : suffixes) {
    if (util::ends_with(rest, s.text)) return std::make_pair(rest.substr(0, rest.size() - std::strlen(s.text)), &s);
  }
  return std::nullopt;
}

// DoRA's magnitude as [out]: peft's 1-D vector, or kohya/LyCORIS's [out, 1]. LyCORIS's older
// input-axis form [1, in] (wd_on_out = false) normalises the other axis of W: not this DoRA.
torch::Tensor dora_magnitude(const torch::Tensor& t, const std::string& path, const std::string& name) {
  if (t.dim() == 1) return t;
  if (t.dim() == 2 && t.size(1) == 1 && t.size(0) > 1) return t.reshape({-1});
  throw Error(path + ": DoRA magnitude \"" + name + "\" has shape " + util::shape_string(t.sizes().vec()),
              "expected one value per output feature ([out] as diffusers/peft write, or [out, 1] as LyCORIS writes "
              "with wd_on_out); a [1, in] magnitude is LyCORIS's input-axis DoRA, which this program does not apply");
}

}  // namespace

LoraFileContents read_lora_file(const std::string& path) {
  const auto file = io::SafetensorsFile::open(path);
  LoraFileContents c;
  c.path = path;
  std::map<std::string, double> alphas[3];
  std::map<std::string, LoraPair>* parts[3] = {&c.unet, &c.text_encoder, &c.text_encoder_2};
  // Model prefixes: diffusers/peft, then kohya's.
  static const std::pair<const char*, int> prefixes[] = {{"unet.", 0},       {"text_encoder_2.", 2}, {"text_encoder.", 1},
                                                         {"lora_unet_", 0}, {"lora_te2_", 2},       {"lora_te1_", 1},
                                                         {"lora_te_", 1}};
  for (const auto& info : file->tensors()) {
    const std::string& name = info.name;
    int model = -1;
    std::string rest;
    for (const auto& [prefix, m] : prefixes) {
      if (util::starts_with(name, prefix)) {
        model = m;
        rest = name.substr(std::strlen(prefix));
        break;
      }
    }
    if (model < 0) {
      throw Error(path + ": tensor \"" + name + "\" is not a LoRA tensor this program knows",
                  "expected diffusers (unet.<module>.lora.down.weight) or kohya (lora_unet_<module>.lora_down.weight) "
                  "names");
    }
    if (util::ends_with(rest, ".alpha")) {
      alphas[model][rest.substr(0, rest.size() - 6)] = io::tensor_view(file, info).to(torch::kDouble).item<double>();
      continue;
    }
    const auto split = split_suffix(rest);
    if (!split) throw Error(path + ": tensor \"" + name + "\" has no lora down/up suffix");
    if (c.format.empty()) c.format = split->second->format;
    LoraPair& pair = (*parts[model])[split->first];
    const torch::Tensor t = io::tensor_view(file, info).to(torch::kFloat).clone();
    if (split->second->part == Part::kMagnitude) {
      pair.magnitude = dora_magnitude(t, path, name);
      continue;
    }
    if (t.dim() != 2) {
      throw Error(path + ": tensor \"" + name + "\" has shape " + util::shape_string(t.sizes().vec()) +
                  "; only linear-layer LoRA (2-D) is supported");
    }
    (split->second->part == Part::kDown ? pair.down : pair.up) = t;
  }
  for (int m = 0; m < 3; ++m) {
    for (auto& [module, pair] : *parts[m]) {
      if (!pair.down.defined() || !pair.up.defined()) {
        const char* has = pair.down.defined() ? "its down matrix" : pair.up.defined() ? "its up matrix" : "a DoRA magnitude";
        throw Error(path + ": LoRA of \"" + module + "\" has only " + has, "a LoRA needs both its down and up matrix");
      }
      if (pair.down.size(0) != pair.up.size(1)) {
        throw Error(path + ": LoRA of \"" + module + "\": down " + util::shape_string(pair.down.sizes().vec()) +
                    " and up " + util::shape_string(pair.up.sizes().vec()) + " disagree on the rank");
      }
      if (auto it = alphas[m].find(module); it != alphas[m].end()) pair.alpha = it->second;
      if (pair.magnitude.defined() && pair.magnitude.size(0) != pair.up.size(0)) {
        throw Error(path + ": DoRA magnitude of \"" + module + "\" has " + std::to_string(pair.magnitude.size(0)) +
                    " values, its up matrix " + std::to_string(pair.up.size(0)) + " output features");
      }
    }
  }
  if (c.unet.empty() && c.text_encoder.empty() && c.text_encoder_2.empty()) {
    throw Error(path + ": no LoRA tensors in the file");
  }
  return c;
}

LoraApplyReport apply_lora(torch::nn::Module& unet, const std::map<std::string, LoraPair>& adapters,
                           const std::string& source, double scale, bool merge) {
  // Each projection under its diffusers path, that path with '_' (kohya keys), and for the
  // UNet its SGM path both ways (kohya sd-scripts / A1111 / ComfyUI keys).
  std::vector<std::pair<std::string, std::shared_ptr<nn::LoraCompatibleLinearImpl>>> projections;
  std::vector<std::string> paths;
  for (const auto& item : unet.named_modules("", false)) {
    if (auto lin = std::dynamic_pointer_cast<nn::LoraCompatibleLinearImpl>(item.value())) {
      projections.emplace_back(item.key(), lin);
      paths.push_back(item.key());
    }
  }
  std::map<std::string, std::shared_ptr<nn::LoraCompatibleLinearImpl>> by_name;
  const auto add_name = [&](const std::string& name, const auto& lin) {
    by_name[name] = lin;
    std::string underscored = name;
    std::replace(underscored.begin(), underscored.end(), '.', '_');
    by_name[underscored] = lin;
  };
  const std::optional<int> layers_per_block = layers_per_block_from_paths(paths);
  for (const auto& [path, lin] : projections) {
    add_name(path, lin);
    if (layers_per_block) {
      if (auto sgm = diffusers_to_sgm_unet_path(path, *layers_per_block)) add_name(*sgm, lin);
    }
  }
  LoraApplyReport report;
  auto gen = at::detail::createCPUGenerator(0);
  torch::NoGradGuard no_grad;
  for (const auto& [module, pair] : adapters) {
    auto it = by_name.find(module);
    if (it == by_name.end()) {
      report.unused.push_back(module);
      continue;
    }
    auto& lin = it->second;
    const std::int64_t rank = pair.down.size(0);
    if (pair.down.size(1) != lin->in_features() || pair.up.size(0) != lin->out_features()) {
      throw Error(source + ": LoRA of \"" + module + "\" is " + std::to_string(pair.down.size(1)) + " -> " +
                      std::to_string(pair.up.size(0)) + ", but the model's projection is " +
                      std::to_string(lin->in_features()) + " -> " + std::to_string(lin->out_features()),
                  "was this LoRA trained for another base model?");
    }
    // kohya stores alpha (scale alpha / rank); diffusers and peft files are scale 1.
    const double alpha = pair.alpha.value_or(static_cast<double>(rank));
    lin->add_lora(rank, alpha, gen);
    lin->lora_A->weight.copy_(pair.down);
    lin->lora_B->weight.copy_(pair.up);
    if (pair.magnitude.defined()) {
      lin->add_dora();
      lin->lora_magnitude.copy_(pair.magnitude);
    }
    if (merge) {
      lin->merge_lora(scale);
    } else {
      lin->lora_scale = scale;
      lin->lora_A->weight.set_requires_grad(false);
      lin->lora_B->weight.set_requires_grad(false);
      if (lin->has_dora()) lin->lora_magnitude.set_requires_grad(false);
    }
    ++report.applied;
  }
  return report;
}

}  // namespace sdxl::model
