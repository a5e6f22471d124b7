#include "sdxl_dreambooth/train/training_checkpoint.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/train/checkpoint_dir.h"
#include "sdxl_dreambooth/train/pivotal_tuning.h"
#include "sdxl_dreambooth/util/strings.h"

#include <map>

namespace fs = std::filesystem;

namespace sdxl::train {
namespace {

// "<path>.lora_A.weight" -> ("<path>", "lora_A")
std::pair<std::string, std::string> split_param_name(const std::string& name) {
  const std::string suffix = ".weight";
  const std::string base = util::ends_with(name, suffix) ? name.substr(0, name.size() - suffix.size()) : name;
  const auto dot = base.rfind('.');  // "<path>.lora_magnitude_vector" (no .weight) splits the same way
  return {base.substr(0, dot), base.substr(dot + 1)};
}

std::string list_text(const std::vector<std::string>& v) { return "[" + util::join(v, ", ") + "]"; }

// What a checkpoint holds for `m`: its tensors, update count and HDF5 group; null params when absent.
struct StoredModel {
  const std::vector<AdapterParam>* params = nullptr;
  std::int64_t optimizer_steps = 0;
  std::string group;
};

StoredModel stored_model(const Checkpoint& c, const TrainedModel& m) {
  if (m.tokens) {
    if (!c.tokens) return {nullptr, 0, "/embeddings"};
    return {&c.tokens->params, c.tokens->optimizer_steps, "/embeddings"};
  }
  const ModelAdapters* a = c.find(m.model);
  if (!a) return {nullptr, 0, "/lora/" + m.model};
  return {&a->params, a->optimizer_steps, "/lora/" + m.model};
}

// Per stored tensor: the weight, then each optimizer state tensor, appended to `flat` from `offset`.
void pack_stored(const Checkpoint& c, const std::string& path, const TrainedModel& m,
                 const std::vector<std::string>& state_names, torch::Tensor& flat, std::int64_t& offset,
                 double& steps) {
  const StoredModel stored = stored_model(c, m);
  if (!stored.params) throw UsageError(path + ": no " + stored.group + (m.tokens ? " (token embeddings)" : " adapters"));
  std::map<std::pair<std::string, std::string>, const AdapterParam*> by_name;
  for (const auto& p : *stored.params) by_name[{p.module, p.half}] = &p;
  const auto named = m.named_parameters();
  if (by_name.size() != named.size()) {
    const std::size_t per_module = m.network ? m.network->params_per_module() : 1;
    throw UsageError(path + ": " + stored.group + " has " + std::to_string(by_name.size() / per_module) +
                         (m.network ? " adapters, this run's " : " tensors, this run's ") + m.model + " has " +
                         std::to_string(named.size() / per_module),
                     "was the checkpoint written for another base model or other lora.targets?");
  }
  for (const auto& [name, tensor] : named) {
    const auto key = split_param_name(name);
    auto it = by_name.find(key);
    if (it == by_name.end()) {
      throw UsageError(path + ": no " + stored.group + "/" + (m.tokens ? "" : key.first + "/") + key.second +
                       ", which this run's " + m.model + " has");
    }
    const AdapterParam& p = *it->second;
    if (!p.weight.sizes().equals(tensor.sizes())) {
      throw UsageError(path + ": " + stored.group + "/" + (m.tokens ? "" : key.first + "/") + key.second +
                           " has shape " + util::shape_string(p.weight.sizes().vec()) + ", the model needs " +
                           util::shape_string(tensor.sizes().vec()),
                       "was the checkpoint written for another base model?");
    }
    std::vector<const torch::Tensor*> values{&p.weight};
    for (const auto& state : state_names) {
      const auto s = p.state.find(state);
      if (s == p.state.end()) throw Error("internal: " + path + " read without optimizer state " + state);
      values.push_back(&s->second);
    }
    for (const torch::Tensor* t : values) {
      flat.narrow(0, offset, t->numel()).copy_(t->reshape({-1}));
      offset += t->numel();
    }
  }
  steps = static_cast<double>(stored.optimizer_steps);
}

}  // namespace

std::vector<std::pair<std::string, torch::Tensor>> TrainedModel::named_parameters() const {
  return network ? network->named_parameters() : tokens->named_parameters();
}

std::vector<torch::Tensor> TrainedModel::parameters() const {
  return network ? network->parameters() : tokens->parameters();
}

std::optional<ResumePoint> find_resume_checkpoint(const std::string& setting, const fs::path& dir, bool requeued,
                                                  const Logger& log) {
  std::string mode = setting;
  const auto existing = list_checkpoints(dir);
  if (mode == "none" && requeued) {
    log.info("requeued job (SLURM_RESTART_COUNT > 0): resuming from the latest checkpoint in " + dir.string());
    mode = "latest";
  }
  if (mode == "none") {
    if (!existing.empty()) {
      throw UsageError("checkpoint.dir " + util::quoted(dir.string()) + " already holds " +
                           existing.back().path.filename().string() + " (and " + std::to_string(existing.size() - 1) +
                           " older); a new run would overwrite them",
                       "continue it with checkpoint.resume = \"latest\" (--set checkpoint.resume='\"latest\"'), or "
                       "choose another output.dir / checkpoint.dir");
    }
    return std::nullopt;
  }
  if (mode == "latest") {
    if (existing.empty()) {
      log.info("checkpoint.resume = \"latest\": no checkpoint in " + dir.string() + " yet, starting at step 0");
      return std::nullopt;
    }
    // Newest first; a file that cannot be read (disk trouble, a foreign file) falls back to
    // the one before it, loudly.
    for (auto it = existing.rbegin(); it != existing.rend(); ++it) {
      try {
        return ResumePoint{it->path, read_checkpoint_file(it->path.string())};
      } catch (const Error& e) {
        log.warn("cannot resume from " + it->path.string() + ": " + e.what() +
                 (std::next(it) != existing.rend() ? "; trying the previous checkpoint" : ""));
      }
    }
    throw Error("checkpoint.resume = \"latest\": none of the " + std::to_string(existing.size()) +
                " checkpoints in " + dir.string() + " can be read (see the warnings above)");
  }
  return ResumePoint{fs::path(mode), read_checkpoint_file(mode)};
}

void check_resume_compatible(const Checkpoint& c, const std::string& path, const std::vector<AdapterSettings>& wanted,
                             const std::string& optimizer_type, const text::TokenAbstractions& tokens) {
  if (c.tokens.has_value() != !tokens.empty()) {
    throw UsageError(path + (c.tokens ? " holds pivotal tuning's token embeddings (/embeddings), this run does not "
                                        "train any"
                                      : " holds no token embeddings, this run trains them"),
                     "lora.train_text_encoder_ti must be as in the run that wrote the checkpoint");
  }
  if (c.tokens && c.tokens->abstractions.describe() != tokens.describe()) {
    throw UsageError(path + ": /embeddings holds " + c.tokens->abstractions.describe() + ", the config asks for " +
                         tokens.describe(),
                     "lora.token_abstraction and lora.num_new_tokens_per_abstraction must be as in the run that "
                     "wrote the checkpoint");
  }
  if (c.optimizer_type != optimizer_type) {
    throw UsageError(path + " was written by a run with the " + c.optimizer_type + " optimizer, this run uses " +
                         optimizer_type,
                     "optimizer.kind must be as in the run that wrote the checkpoint");
  }
  std::vector<std::string> have, want;
  for (const auto& a : c.adapters) have.push_back(a.model);
  for (const auto& w : wanted) want.push_back(w.model);
  if (have != want) {
    throw UsageError(path + " holds LoRA adapters for " + list_text(have) + ", this run trains " + list_text(want),
                     "lora.train_text_encoder must be as in the run that wrote the checkpoint");
  }
  for (const auto& w : wanted) {
    const ModelAdapters& a = *c.find(w.model);
    if (a.rank != w.rank) {
      throw UsageError(path + ": /lora/" + w.model + " has rank " + std::to_string(a.rank) +
                       ", the config asks for lora.rank = " + std::to_string(w.rank));
    }
    if (a.alpha != w.alpha) {
      throw UsageError(path + ": /lora/" + w.model + " has alpha " + util::format_number(a.alpha) +
                       ", the config asks for lora.alpha = " + util::format_number(w.alpha));
    }
    if (a.dora != w.dora) {
      throw UsageError(path + ": /lora/" + w.model + (a.dora ? " holds DoRA" : " holds plain LoRA") +
                       " adapters, the config asks for lora.use_dora = " + (w.dora ? "true" : "false"));
    }
    if (a.targets != w.targets) {
      throw UsageError(path + ": /lora/" + w.model + " targets " + list_text(a.targets) + ", the config asks for " +
                       list_text(w.targets));
    }
    if (a.conv_rank > 0 && (a.conv_rank != w.conv_rank || a.conv_alpha != w.conv_alpha)) {
      throw UsageError(path + ": /lora/" + w.model + " has convolution adapters of rank " +
                       std::to_string(a.conv_rank) + ", alpha " + util::format_number(a.conv_alpha) +
                       ", the config asks for lora.conv_rank = " + std::to_string(w.conv_rank) +
                       ", lora.conv_alpha = " + util::format_number(w.conv_alpha));
    }
  }
}

namespace {

// The tensors of `m` with their optimizer state, copied to the CPU.
std::vector<AdapterParam> capture_params(const TrainedModel& m) {
  std::vector<AdapterParam> out;
  const auto named = m.named_parameters();
  const auto cpu = [](const torch::Tensor& t) { return t.detach().to(torch::kCPU, torch::kFloat).clone(); };
  for (std::size_t i = 0; i < named.size(); ++i) {
    AdapterParam p;
    std::tie(p.module, p.half) = split_param_name(named[i].first);
    p.weight = cpu(named[i].second);
    const auto& names = m.optimizer->state_names();
    for (std::size_t k = 0; k < names.size(); ++k) p.state[names[k]] = cpu(m.optimizer->state(m.group, i, k));
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace

std::optional<TrainedTokens> capture_tokens(const std::vector<TrainedModel>& models) {
  for (const auto& m : models) {
    if (!m.tokens) continue;
    TrainedTokens t;
    t.abstractions = m.tokens->abstractions();
    t.params = capture_params(m);
    t.optimizer_steps = m.optimizer->steps_taken(m.group);
    t.peak_lr = m.peak_lr;
    return t;
  }
  return std::nullopt;
}

std::vector<ModelAdapters> capture_adapters(const std::vector<TrainedModel>& models) {
  std::vector<ModelAdapters> out;
  for (const auto& m : models) {
    if (!m.network) continue;
    ModelAdapters a;
    a.model = m.model;
    a.rank = m.network->spec().rank;
    a.alpha = m.network->spec().alpha;
    a.targets = m.network->spec().targets;
    a.dora = m.network->spec().dora;
    if (!m.network->conv_modules().empty()) {
      a.conv_rank = m.network->spec().conv_rank;
      a.conv_alpha = m.network->spec().conv_alpha;
    }
    a.layers_per_block = m.layers_per_block;
    a.optimizer_steps = m.optimizer->steps_taken(m.group);
    a.peak_lr = m.peak_lr;
    a.params = capture_params(m);
    out.push_back(std::move(a));
  }
  return out;
}

void restore_adapters(const Checkpoint* c, const std::string& path, const std::vector<TrainedModel>& models,
                      dist::DeviceCollectives& comm) {
  // Flat layout: per model, per parameter: weight, then each optimizer state tensor.
  const std::vector<std::string>& state_names = models.front().optimizer->state_names();
  const auto per_param = static_cast<std::int64_t>(1 + state_names.size());
  std::int64_t total = 0;
  for (const auto& m : models) {
    for (const auto& p : m.parameters()) total += per_param * p.numel();
  }
  torch::Tensor flat = torch::zeros({total}, torch::kFloat);
  // The step counts, then the optimizer's scalars (Prodigy's d, d_max, d_numerator) in name order.
  const std::map<std::string, double> scalars = models.front().optimizer->scalars();
  torch::Tensor steps = torch::zeros({static_cast<std::int64_t>(models.size() + scalars.size())}, torch::kDouble);
  if (c) {
    std::int64_t k = static_cast<std::int64_t>(models.size());
    for (const auto& [name, value] : scalars) {
      const auto it = c->optimizer_scalars.find(name);
      if (it == c->optimizer_scalars.end()) throw Error(path + ": /optimizer has no attribute " + name);
      steps[k++] = it->second;
    }
    std::int64_t offset = 0;
    for (std::size_t mi = 0; mi < models.size(); ++mi) {
      double model_steps = 0;
      pack_stored(*c, path, models[mi], state_names, flat, offset, model_steps);
      steps[static_cast<std::int64_t>(mi)] = model_steps;
    }
  }
  // Model data: through the device collectives (NCCL moves it GPU to GPU). The steps are host
  // values and ride at the end of the same buffer (exact in float64 up to 2^53).
  dist::DeviceBuffer buffer = comm.buffer(total + steps.numel(), torch::kDouble);
  if (c) {
    buffer.tensor().narrow(0, 0, total).copy_(flat);
    buffer.tensor().narrow(0, total, steps.numel()).copy_(steps);
  }
  comm.broadcast(buffer, 0, "checkpoint adapters and optimizer steps");
  const torch::Tensor received = buffer.tensor().to(torch::kCPU);
  flat = received.narrow(0, 0, total).to(torch::kFloat);
  steps = received.narrow(0, total, steps.numel());
  torch::NoGradGuard no_grad;
  std::int64_t offset = 0;
  for (std::size_t mi = 0; mi < models.size(); ++mi) {
    const auto& m = models[mi];
    const auto params = m.parameters();
    for (std::size_t i = 0; i < params.size(); ++i) {
      std::vector<torch::Tensor> targets{params[i]};
      for (std::size_t k = 0; k < state_names.size(); ++k) targets.push_back(m.optimizer->state(m.group, i, k));
      for (torch::Tensor target : targets) {
        target.copy_(flat.narrow(0, offset, target.numel()).view(target.sizes()));
        offset += target.numel();
      }
    }
    m.optimizer->set_steps_taken(m.group,
                                 static_cast<std::int64_t>(steps[static_cast<std::int64_t>(mi)].item<double>()));
  }
  std::map<std::string, double> restored;
  std::int64_t k = static_cast<std::int64_t>(models.size());
  for (const auto& [name, value] : scalars) restored[name] = steps[k++].item<double>();
  models.front().optimizer->set_scalars(restored);
}

}  // namespace sdxl::train
