#include "sdxl_dreambooth/config/resume_changes.h"

#include "sdxl_dreambooth/config/schema.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <functional>
#include <map>

namespace sdxl::config {
namespace {

bool changes_a_step(const KeySpec& k) {
  static const std::array<const char*, 6> kFree{"model", "output", "checkpoint", "logging", "validation",
                                                "distributed"};
  // train.seed: the checkpoint's is used, with a warning of its own.
  static const std::array<const char*, 4> kFreeKeys{"train.max_steps", "train.epochs", "train.device",
                                                    "train.seed"};
  if (std::find(kFree.begin(), kFree.end(), k.section()) != kFree.end()) return false;
  return std::find(kFreeKeys.begin(), kFreeKeys.end(), k.key) == kFreeKeys.end();
}

bool prefix(const std::string& key, const char* p) { return key.rfind(p, 0) == 0; }

bool buckets(const RunConfig& c) {
  if (c.data.bucketing) return true;
  return std::any_of(c.data.subsets.begin(), c.data.subsets.end(),
                     [](const DataSubset& s) { return s.bucketing.value_or(false); });
}

// Whether `key` acts in run `c`: keys that only act under another setting (class images
// without prior preservation, Prodigy's under AdamW, ...) changing in two runs where they do
// nothing is no change.
bool acts(const std::string& key, const RunConfig& c) {
  using When = std::function<bool(const RunConfig&)>;
  const When prior = [](const RunConfig& r) { return r.prior.enabled; };
  const When text_encoders = [](const RunConfig& r) { return r.lora.train_text_encoder || r.lora.train_text_encoder_ti; };
  const When pivotal = [](const RunConfig& r) { return r.lora.train_text_encoder_ti; };
  static const std::map<std::string, When> kWhen{
      {"data.class_dir", prior},
      {"data.class_prompt", prior},
      {"data.num_class_images", prior},
      {"data.min_bucket_resolution", buckets},
      {"data.max_bucket_resolution", buckets},
      {"data.bucket_step", buckets},
      {"lora.conv_alpha", [](const RunConfig& r) { return r.lora.conv_rank.has_value(); }},
      {"lora.text_encoder_targets", [](const RunConfig& r) { return r.lora.train_text_encoder; }},
      {"lora.text_encoder_lr", text_encoders},
      {"optimizer.text_encoder_weight_decay", text_encoders},
      {"lora.token_abstraction", pivotal},
      {"lora.num_new_tokens_per_abstraction", pivotal},
      {"lora.train_text_encoder_ti_frac", pivotal},
      {"train.lr_num_cycles", [](const RunConfig& r) { return r.train.lr_scheduler == "cosine_with_restarts"; }},
      {"train.lr_power", [](const RunConfig& r) { return r.train.lr_scheduler == "polynomial"; }},
      {"train.huber_c", [](const RunConfig& r) { return r.train.loss != "l2"; }},
      {"train.huber_schedule", [](const RunConfig& r) { return r.train.loss != "l2"; }},
      {"train.multires_noise_discount", [](const RunConfig& r) { return r.train.multires_noise_iterations > 0; }},
  };
  if (prefix(key, "prior.") && key != "prior.enabled") return c.prior.enabled;
  if (prefix(key, "optimizer.prodigy_")) return c.optimizer.kind == "prodigy";
  auto it = kWhen.find(key);
  return it == kWhen.end() || it->second(c);
}

// Paths compare as the folders they name: "./data/", "data" and its absolute path are one.
bool same(const Value& a, const Value& b, bool is_path) {
  if (a == b) return true;
  const auto* x = std::get_if<std::string>(&a);
  const auto* y = std::get_if<std::string>(&b);
  if (!is_path || !x || !y || x->empty() || y->empty()) return false;
  std::error_code e1, e2;
  const auto p = std::filesystem::weakly_canonical(std::filesystem::absolute(*x), e1);
  const auto q = std::filesystem::weakly_canonical(std::filesystem::absolute(*y), e2);
  const auto trim = [](std::filesystem::path v) { return v.has_filename() ? v : v.parent_path(); };
  return !e1 && !e2 && trim(p) == trim(q);
}

std::string shown(const Value& v) { return is_set(v) ? to_toml(v) : std::string("unset"); }

std::string change(const std::string& key, const Value& was, const Value& now) {
  return key + " (" + shown(was) + " → " + shown(now) + ")";
}

}  // namespace

std::vector<std::string> resume_changes(const RunConfig& was, const RunConfig& now) {
  std::vector<std::string> out;
  for (const KeySpec& k : schema()) {
    if (!k.read || !changes_a_step(k) || !(acts(k.key, was) || acts(k.key, now))) continue;
    const Value a = k.read(was), b = k.read(now);
    if (!same(a, b, !k.path.empty())) out.push_back(change(k.key, a, b));
  }
  const auto& ws = was.data.subsets;
  const auto& ns = now.data.subsets;
  if (ws.size() != ns.size()) {
    out.push_back("[[data.subsets]] (" + std::to_string(ws.size()) + " tables → " + std::to_string(ns.size()) + ")");
    return out;
  }
  for (std::size_t i = 0; i < ws.size(); ++i) {
    for (const SubsetKeySpec& k : subset_schema()) {
      if (!(acts(k.data_key->key, was) || acts(k.data_key->key, now))) continue;
      const Value a = k.read(ws[i]), b = k.read(ns[i]);
      if (!same(a, b, !k.data_key->path.empty())) {
        out.push_back(change("data.subsets[" + std::to_string(i) + "]." + k.name, a, b));
      }
    }
  }
  return out;
}

}  // namespace sdxl::config
