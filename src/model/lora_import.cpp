#include "sdxl_dreambooth/model/lora_import.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/io/safetensors_torch.h"
#include "sdxl_dreambooth/model/sgm_unet_names.h"
#include "sdxl_dreambooth/nn/lora_conv.h"
#include "sdxl_dreambooth/nn/lora_linear.h"
#include "sdxl_dreambooth/util/strings.h"

#include <algorithm>
#include <cmath>
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
      const torch::Tensor a = io::tensor_view(file, info).to(torch::kDouble);
      const double alpha = a.numel() == 1 ? a.reshape({-1})[0].item<double>() : 0.0;
      if (a.numel() != 1 || !std::isfinite(alpha) || alpha < 0) {
        throw Error(path + ": \"" + name + "\" must be one finite alpha >= 0, got " +
                    (a.numel() == 1 ? util::format_number(alpha) : "a tensor of shape " + util::shape_string(a.sizes().vec())));
      }
      alphas[model][rest.substr(0, rest.size() - 6)] = alpha;
      continue;
    }
    const auto split = split_suffix(rest);
    if (!split) throw Error(path + ": tensor \"" + name + "\" has no lora down/up suffix");
    if (c.format.empty()) c.format = split->second->format;
    LoraPair& pair = (*parts[model])[split->first];
    // As the base weights (state_dict_loader): integers converted to float would be garbage weights.
    if (!c10::isFloatingType(io::to_torch_dtype(info.dtype))) {
      throw Error(path + ": tensor \"" + name + "\" is " + io::dtype_name(info.dtype) +
                  "; LoRA weights are floating point (F32, F16, BF16 or F64)");
    }
    const torch::Tensor t = io::tensor_view(file, info).to(torch::kFloat).clone();
    if (!torch::isfinite(t).all().item<bool>()) {
      throw Error(path + ": tensor \"" + name + "\" has non-finite values (NaN or infinity)",
                  "the file is damaged, or came from a run that diverged");
    }
    if (t.numel() == 0) throw Error(path + ": tensor \"" + name + "\" is empty (shape " + util::shape_string(t.sizes().vec()) + ")");
    if (split->second->part == Part::kMagnitude) {
      pair.magnitude = dora_magnitude(t, path, name);
      continue;
    }
    const bool conv_up_ok = split->second->part == Part::kDown || (t.dim() == 4 && t.size(2) == 1 && t.size(3) == 1);
    if (t.dim() != 2 && !(t.dim() == 4 && t.size(2) == t.size(3) && conv_up_ok)) {
      throw Error(path + ": tensor \"" + name + "\" has shape " + util::shape_string(t.sizes().vec()) +
                  "; expected a linear layer's LoRA (2-D) or a convolution's (LoCon: down [rank, in, k, k], "
                  "up [out, rank, 1, 1])");
    }
    (split->second->part == Part::kDown ? pair.down : pair.up) = t;
  }
  for (int m = 0; m < 3; ++m) {
    for (auto& [module, pair] : *parts[m]) {
      if (!pair.down.defined() || !pair.up.defined()) {
        const char* has = pair.down.defined() ? "its down matrix" : pair.up.defined() ? "its up matrix" : "a DoRA magnitude";
        throw Error(path + ": LoRA of \"" + module + "\" has only " + has, "a LoRA needs both its down and up matrix");
      }
      if (pair.magnitude.defined() && pair.down.dim() == 4 && pair.down.size(2) > 1) {
        throw Error(path + ": \"" + module + "\" is a convolution's LoRA with a DoRA magnitude",
                    "DoRA on convolutions is not supported");
      }
      if (pair.down.dim() != pair.up.dim()) {
        throw Error(path + ": LoRA of \"" + module + "\": down " + util::shape_string(pair.down.sizes().vec()) +
                    " and up " + util::shape_string(pair.up.sizes().vec()) +
                    " are not both matrices (a linear layer's) or both kernels (a convolution's)");
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

namespace {

// A linear layer or a convolution that can take an adapter, under every name a file may use.
struct Target {
  std::shared_ptr<nn::LoraCompatibleLinearImpl> linear;
  std::shared_ptr<nn::LoraCompatibleConvImpl> conv;
};

// Each layer under its diffusers path, that path with '_' (kohya keys), and for the UNet its
// SGM path both ways (kohya sd-scripts / A1111 / ComfyUI keys).
std::map<std::string, Target> adapter_targets(torch::nn::Module& model) {
  std::vector<std::pair<std::string, Target>> layers;
  std::vector<std::string> paths;
  for (const auto& item : model.named_modules("", false)) {
    paths.push_back(item.key());
    Target t{std::dynamic_pointer_cast<nn::LoraCompatibleLinearImpl>(item.value()),
             std::dynamic_pointer_cast<nn::LoraCompatibleConvImpl>(item.value())};
    if (t.linear || t.conv) layers.emplace_back(item.key(), t);
  }
  std::map<std::string, Target> by_name;
  const auto add_name = [&](const std::string& name, const Target& t) {
    by_name[name] = t;
    std::string underscored = name;
    std::replace(underscored.begin(), underscored.end(), '.', '_');
    by_name[underscored] = t;
  };
  const std::optional<int> layers_per_block = layers_per_block_from_paths(paths);
  const std::vector<int> plain_up = plain_up_blocks_from_paths(paths);
  for (const auto& [path, t] : layers) {
    add_name(path, t);
    if (layers_per_block) {
      if (auto sgm = diffusers_to_sgm_unet_path(path, *layers_per_block, plain_up)) add_name(*sgm, t);
    }
  }
  return by_name;
}

void apply_to_linear(nn::LoraCompatibleLinearImpl& lin, const LoraPair& pair, const std::string& module,
                     const std::string& source, double scale, bool merge, at::Generator& gen) {
  // A 1x1 kernel (kohya's SD 1.x proj_in) is a matrix.
  const torch::Tensor down = pair.down.dim() == 4 ? pair.down.flatten(1) : pair.down;
  const torch::Tensor up = pair.up.dim() == 4 ? pair.up.flatten(1) : pair.up;
  const std::int64_t rank = down.size(0);
  if (down.size(1) != lin.in_features() || up.size(0) != lin.out_features()) {
    throw Error(source + ": LoRA of \"" + module + "\" is " + std::to_string(down.size(1)) + " -> " +
                    std::to_string(up.size(0)) + ", but the model's projection is " +
                    std::to_string(lin.in_features()) + " -> " + std::to_string(lin.out_features()),
                "was this LoRA trained for another base model?");
  }
  // kohya stores alpha (scale alpha / rank); diffusers and peft files are scale 1.
  lin.add_lora(rank, pair.alpha.value_or(static_cast<double>(rank)), gen);
  lin.lora_A->weight.copy_(down);
  lin.lora_B->weight.copy_(up);
  if (pair.magnitude.defined()) {
    lin.add_dora();
    lin.lora_magnitude.copy_(pair.magnitude);
  }
  if (merge) {
    lin.merge_lora(scale);
    return;
  }
  lin.lora_scale = scale;
  lin.lora_A->weight.set_requires_grad(false);
  lin.lora_B->weight.set_requires_grad(false);
  if (lin.has_dora()) lin.lora_magnitude.set_requires_grad(false);
}

void apply_to_conv(nn::LoraCompatibleConvImpl& conv, const LoraPair& pair, const std::string& module,
                   const std::string& source, double scale, bool merge, at::Generator& gen) {
  const nn::ConvShape& s = conv.shape();
  // A matrix on a 1x1 convolution is its 1x1 kernel.
  const auto as_kernel = [](const torch::Tensor& t) { return t.dim() == 2 ? t.view({t.size(0), t.size(1), 1, 1}) : t; };
  const torch::Tensor down = as_kernel(pair.down), up = as_kernel(pair.up);
  if (down.size(1) != s.in || up.size(0) != s.out || down.size(2) != s.kernel || down.size(3) != s.kernel) {
    throw Error(source + ": LoRA of \"" + module + "\" has down " + util::shape_string(pair.down.sizes().vec()) +
                    " and up " + util::shape_string(pair.up.sizes().vec()) + ", but the model's convolution is " +
                    std::to_string(s.in) + " -> " + std::to_string(s.out) + " with a " + std::to_string(s.kernel) +
                    "x" + std::to_string(s.kernel) + " kernel",
                "was this LoRA trained for another base model?");
  }
  if (pair.magnitude.defined()) throw Error(source + ": \"" + module + "\": DoRA on a convolution is not supported");
  const std::int64_t rank = down.size(0);
  conv.add_lora(rank, pair.alpha.value_or(static_cast<double>(rank)), gen);
  conv.lora_A->weight.copy_(down);
  conv.lora_B->weight.copy_(up);
  if (merge) {
    conv.merge_lora(scale);
    return;
  }
  conv.lora_scale = scale;
  conv.lora_A->weight.set_requires_grad(false);
  conv.lora_B->weight.set_requires_grad(false);
}

}  // namespace

LoraApplyReport apply_lora(torch::nn::Module& model, const std::map<std::string, LoraPair>& adapters,
                           const std::string& source, double scale, bool merge) {
  const std::map<std::string, Target> by_name = adapter_targets(model);
  LoraApplyReport report;
  auto gen = at::detail::createCPUGenerator(0);
  torch::NoGradGuard no_grad;
  for (const auto& [module, pair] : adapters) {
    auto it = by_name.find(module);
    if (it == by_name.end()) {
      report.unused.push_back(module);
      continue;
    }
    const Target& t = it->second;
    if (t.conv) {
      apply_to_conv(*t.conv, pair, module, source, scale, merge, gen);
    } else {
      apply_to_linear(*t.linear, pair, module, source, scale, merge, gen);
    }
    ++report.applied;
  }
  return report;
}

}  // namespace sdxl::model
