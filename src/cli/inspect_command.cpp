// `inspect`: what a checkpoint holds, for people (text) and scripts (--json).
#include "sdxl_dreambooth/cli/args.h"
#include "sdxl_dreambooth/cli/command.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/train/checkpoint_file.h"
#include "sdxl_dreambooth/util/json_text.h"
#include "sdxl_dreambooth/util/strings.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <map>

namespace sdxl::cli {
namespace {

std::string fixed(double v, const char* format = "%.4f") {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

std::string provenance(const train::Checkpoint& c, const std::string& key) {
  auto it = c.provenance.find(key);
  return it == c.provenance.end() ? std::string("?") : it->second;
}

nlohmann::json to_json(const std::string& path, const train::Checkpoint& c) {
  nlohmann::json j;
  j["path"] = path;
  j["format_version"] = c.format_version;
  const auto& s = c.state;
  j["state"] = {{"step", s.step},           {"max_steps", s.max_steps},         {"epoch", s.epoch},
                {"samples_seen", s.samples_seen}, {"world_size", s.world_size}, {"seed", s.seed},
                {"lr", s.lr},               {"lr_scheduler", s.lr_scheduler},   {"loss_scale", s.loss_scale},
                {"skipped_steps", s.skipped_steps}};
  j["provenance"] = c.provenance;
  std::uint64_t base_bytes = 0;
  nlohmann::json files = nlohmann::json::array();
  for (const auto& f : c.base_model_files) {
    files.push_back({{"file", f.file}, {"bytes", f.bytes}, {"sha256", f.sha256}});
    base_bytes += f.bytes;
  }
  j["base_model"] = {{"spec", provenance(c, "base_model")}, {"files", files}, {"bytes", base_bytes}};
  nlohmann::json lora = nlohmann::json::array();
  for (const auto& a : c.adapters) {
    std::int64_t params = 0;
    for (const auto& p : a.params) params += p.weight.numel();
    lora.push_back({{"model", a.model},
                    {"rank", a.rank},
                    {"alpha", a.alpha},
                    {"targets", a.targets},
                    {"dora", a.dora},
                    {"adapters", a.params.size() / (a.dora ? 3 : 2)},  // A, B (and DoRA's magnitude) each
                    {"parameters", params},
                    {"bytes", params * 4}});
  }
  j["lora"] = lora;
  if (c.tokens) {
    std::vector<std::string> names;
    for (const auto& e : c.tokens->abstractions.entries()) names.push_back(e.first);
    std::int64_t params = 0;
    for (const auto& p : c.tokens->params) params += p.weight.numel();
    j["embeddings"] = {{"abstractions", names}, {"tokens", c.tokens->abstractions.tokens()}, {"parameters", params}};
  }
  j["optimizer"] = c.optimizer_type;
  j["lora_parameters"] = c.lora_parameter_count();
  nlohmann::json metrics = {{"steps", c.metrics.size()}};
  if (!c.metrics.empty()) {
    const auto min = std::min_element(c.metrics.begin(), c.metrics.end(),
                                      [](const auto& a, const auto& b) { return a.loss < b.loss; });
    metrics["first_loss"] = c.metrics.front().loss;
    metrics["last_loss"] = c.metrics.back().loss;
    metrics["min_loss"] = min->loss;
    metrics["min_loss_step"] = min->step;
    double seconds = 0;
    for (const auto& r : c.metrics) seconds += r.step_seconds;
    metrics["mean_step_seconds"] = seconds / static_cast<double>(c.metrics.size());
  }
  j["metrics"] = metrics;
  nlohmann::json samples = nlohmann::json::array();
  for (const auto& img : c.samples) {
    samples.push_back({{"path", "/samples/step_" + std::to_string(img.step)},
                       {"step", img.step},
                       {"prompt", img.prompt},
                       {"prompt_index", img.prompt_index},
                       {"image_index", img.image_index},
                       {"seed", img.seed}});
  }
  j["samples"] = samples;
  if (c.progress_grid.defined()) {
    j["progress_grid"] = {{"path", "/samples/progress"}, {"width", c.progress_grid.size(1)},
                          {"height", c.progress_grid.size(0)}};
  }
  j["config"] = c.config_toml;
  return j;
}

std::string integrity_line(const train::Integrity& i) {
  const std::string read = std::to_string(i.datasets) + " tensors read, adapters and moments finite";
  if (i.checksummed == i.datasets) return read + ", every one's Fletcher-32 checksum verified";
  if (i.checksummed == 0) return read + "; no checksums (written before sdxl-dreambooth stored them)";
  return read + ", " + std::to_string(i.checksummed) + " with a verified checksum";
}

}  // namespace

Command make_inspect_command() {
  Command c;
  c.name = "inspect";
  c.summary = "summarize a checkpoint: step, base model, LoRA size, metrics, samples, config";
  c.help =
      "usage: sdxl-dreambooth inspect CKPT.h5 [--json]\n\n"
      "Prints the step, world size and seed, the base model and its weight files, the LoRA\n"
      "adapters (rank, alpha, targets, parameter count and size), a metrics summary (first, last\n"
      "and lowest loss), the validation samples it holds, what reading it verified (every tensor's\n"
      "Fletcher-32 checksum, finite adapter values) and the effective config. --json prints\n"
      "the same as one JSON object. The layout itself is in docs/checkpoint-format.md; h5ls -r and\n"
      "h5dump show everything.\n";
  c.run = [](const std::vector<std::string>& argv) {
    Args args(argv, {"--json"}, {});
    if (args.positionals().size() != 1) throw UsageError("inspect takes exactly one CKPT.h5");
    const std::string path = args.positionals()[0];
    // Everything is read, so that every checksum and every adapter value is verified.
    const train::Checkpoint ckpt = train::read_checkpoint_file(path);
    nlohmann::json j = to_json(path, ckpt);
    j["integrity"] = {{"tensors_read", ckpt.integrity.datasets}, {"with_checksum", ckpt.integrity.checksummed}};
    if (args.flag("--json")) {
      std::cout << util::json_text(j, 2) << "\n";
      return 0;
    }
    const auto& s = ckpt.state;
    std::cout << "checkpoint:  " << path << " (format version " << ckpt.format_version << ")\n"
              << "step:        " << s.step << " of " << s.max_steps << " (epoch " << s.epoch << ", "
              << s.samples_seen << " examples seen), lr " << util::format_number(s.lr) << " (" << s.lr_scheduler
              << ")\n"
              << "run:         " << s.world_size << " rank(s), seed " << s.seed << ", "
              << provenance(ckpt, "device") << ", precision "
              << (provenance(ckpt, "mixed_precision") == "no" ? std::string("fp32") : provenance(ckpt, "mixed_precision"))
              << "\n"
              << "written:     " << provenance(ckpt, "created") << " on " << provenance(ckpt, "host")
              << " by sdxl-dreambooth " << provenance(ckpt, "program_version") << " ("
              << provenance(ckpt, "git_commit") << "), LibTorch " << provenance(ckpt, "torch_version") << "\n"
              << "base model:  " << provenance(ckpt, "base_model") << " ("
              << j["base_model"]["files"].size() << " weight files, "
              << util::format_bytes(j["base_model"]["bytes"].get<double>()) << ")\n";
    for (const auto& f : ckpt.base_model_files) {
      std::cout << "             " << f.file << "  " << util::format_bytes(static_cast<double>(f.bytes))
                << "  sha256 " << f.sha256 << "\n";
    }
    std::cout << "LoRA:        " << ckpt.lora_parameter_count() << " parameters ("
              << util::format_bytes(static_cast<double>(ckpt.lora_parameter_count()) * 4) << " float32)\n";
    for (const auto& l : j["lora"]) {
      std::cout << "             " << l["model"].get<std::string>() << ": " << l["adapters"].get<std::size_t>()
                << (l["dora"].get<bool>() ? " DoRA" : "") << " adapters, rank " << l["rank"].get<std::int64_t>() << ", alpha "
                << util::format_number(l["alpha"].get<double>()) << ", targets "
                << util::join(l["targets"].get<std::vector<std::string>>(), ", ") << "\n";
    }
    if (ckpt.tokens) {
      std::cout << "embeddings:  /embeddings: pivotal tuning of " << ckpt.tokens->abstractions.describe() << ", "
                << j["embeddings"]["parameters"].get<std::int64_t>() << " parameters (clip_l, clip_g)\n";
    }
    std::cout << "optimizer:   " << j["optimizer"].get<std::string>() << "\n";
    const auto& m = j["metrics"];
    if (ckpt.metrics.empty()) {
      std::cout << "metrics:     none\n";
    } else {
      std::cout << "metrics:     " << m["steps"].get<std::size_t>() << " steps, loss first "
                << fixed(m["first_loss"].get<double>()) << ", last " << fixed(m["last_loss"].get<double>()) << ", min "
                << fixed(m["min_loss"].get<double>()) << " (step " << m["min_loss_step"].get<std::int64_t>() << "), "
                << fixed(m["mean_step_seconds"].get<double>(), "%.3f") << " s/step\n";
    }
    std::map<std::int64_t, std::vector<const train::SampleImage*>> by_step;
    for (const auto& img : ckpt.samples) by_step[img.step].push_back(&img);
    if (by_step.empty()) std::cout << "samples:     none\n";
    for (const auto& [step, images] : by_step) {
      std::cout << "samples:     /samples/step_" << step << ": " << images.size() << " image(s)";
      std::vector<std::string> prompts;
      for (const auto* img : images) {
        const std::string p = util::quoted(img->prompt);
        if (std::find(prompts.begin(), prompts.end(), p) == prompts.end()) prompts.push_back(p);
      }
      std::cout << " of " << util::join(prompts, ", ") << "\n";
    }
    if (ckpt.progress_grid.defined()) {
      std::cout << "samples:     /samples/progress: the progress grid, " << ckpt.progress_grid.size(1) << " x "
                << ckpt.progress_grid.size(0) << " px\n";
    }
    std::cout << "integrity:   " << integrity_line(ckpt.integrity) << "\n";
    std::cout << "config:\n" << ckpt.config_toml;
    if (!ckpt.config_toml.empty() && ckpt.config_toml.back() != '\n') std::cout << "\n";
    return 0;
  };
  return c;
}

}  // namespace sdxl::cli
