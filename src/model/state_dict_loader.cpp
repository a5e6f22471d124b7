#include "sdxl_dreambooth/model/state_dict_loader.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/io/safetensors_torch.h"
#include "sdxl_dreambooth/model/legacy_keys.h"
#include "sdxl_dreambooth/util/strings.h"

#include <map>
#include <sstream>

namespace sdxl::model {

namespace {

std::string shape_str(at::IntArrayRef s) { return util::shape_string(s.vec()); }

}  // namespace

LoadReport load_state_dict(torch::nn::Module& module, const WeightSource& source, const std::string& what,
                           const LoadOptions& options) {
  std::map<std::string, torch::Tensor> targets;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) targets[p.key()] = p.value();
  for (const auto& b : module.named_buffers(/*recurse=*/true)) targets[b.key()] = b.value();

  std::map<std::string, std::string> stored;  // canonical key -> key in the file
  LoadReport report;
  std::vector<std::string> unexpected, missing, mis_shaped, mis_typed;
  for (const std::string& key : source.names()) {
    const std::string canon = canonical_key(key);
    if (targets.count(canon)) {
      stored[canon] = key;
    } else if (options.tolerated_extra_keys.count(key)) {
      report.ignored.push_back(key);
    } else {
      unexpected.push_back(key + " " + shape_str(source.info(key).shape));
    }
  }
  for (const auto& [key, target] : targets) {
    auto it = stored.find(key);
    if (it == stored.end()) {
      missing.push_back(key + " " + shape_str(target.sizes()));
      continue;
    }
    const auto& info = source.info(it->second);
    std::vector<std::int64_t> shape = info.shape;
    const bool legacy_conv = shape.size() == 4 && target.dim() == 2 && shape[2] == 1 && shape[3] == 1 &&
                             shape[0] == target.size(0) && shape[1] == target.size(1);
    if (!legacy_conv && at::IntArrayRef(shape) != target.sizes()) {
      mis_shaped.push_back(key + ": module expects " + shape_str(target.sizes()) + ", " + it->second + " in the file is " +
                           shape_str(shape));
    }
    // Integers converted to float would load as garbage; integer buffers (position_ids) may
    // come from any integer type.
    if (target.is_floating_point() && !c10::isFloatingType(io::to_torch_dtype(info.dtype))) {
      mis_typed.push_back(key + ": module expects floating-point weights, " + it->second + " in the file is " +
                          io::dtype_name(info.dtype));
    }
  }
  if (!missing.empty() || !unexpected.empty() || !mis_shaped.empty() || !mis_typed.empty()) {
    std::ostringstream msg;
    msg << what << " weights in " << source.description() << " do not match the model built from its config.json: "
        << missing.size() << " missing, " << unexpected.size() << " unexpected, " << mis_shaped.size()
        << " mis-shaped" << (mis_typed.empty() ? "" : ", " + std::to_string(mis_typed.size()) + " of a non-float dtype");
    auto list = [&](const char* title, const std::vector<std::string>& items) {
      const std::size_t shown = std::min<std::size_t>(items.size(), 20);
      for (std::size_t i = 0; i < shown; ++i) msg << "\n  " << title << ": " << items[i];
      if (items.size() > shown) msg << "\n  ... and " << items.size() - shown << " more " << title;
    };
    list("missing", missing);
    list("unexpected", unexpected);
    list("mis-shaped", mis_shaped);
    list("non-float", mis_typed);
    throw Error(msg.str(), "check that the folder holds the weights of this component and that config.json belongs to them");
  }
  torch::NoGradGuard no_grad;
  // One flag per floating tensor, read back once: a read per tensor would wait for the GPU
  // thousands of times while loading.
  std::vector<torch::Tensor> finite_flags;
  std::vector<std::string> flagged_keys;
  for (auto& [key, target] : targets) {
    const std::string& file_key = stored.at(key);
    const torch::Tensor src = adapt_legacy_tensor(source.tensor(file_key), target.sizes());
    target.copy_(src);
    // A NaN or infinity in a base weight turns every image black: damage, not a model.
    if (target.is_floating_point()) {
      finite_flags.push_back(torch::isfinite(target).all());
      flagged_keys.push_back(file_key);
    }
    report.bytes += source.info(file_key).end - source.info(file_key).begin;
    ++report.loaded;
  }
  std::vector<std::string> non_finite;
  if (!finite_flags.empty()) {
    const torch::Tensor ok = torch::stack(finite_flags).to(torch::kCPU);
    const auto* flags = ok.data_ptr<bool>();
    for (std::size_t i = 0; i < flagged_keys.size(); ++i) {
      if (!flags[i]) non_finite.push_back(flagged_keys[i]);
    }
  }
  if (!non_finite.empty()) {
    throw Error(what + " weights in " + source.description() + ": " + std::to_string(non_finite.size()) +
                    " tensor(s) hold NaN or infinite values, e.g. " + non_finite.front(),
                "the file is damaged: download or copy it again");
  }
  return report;
}

}  // namespace sdxl::model
