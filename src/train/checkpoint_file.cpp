#include "sdxl_dreambooth/train/checkpoint_file.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/io/durable_file.h"
#include "sdxl_dreambooth/io/hdf5_file.h"
#include "sdxl_dreambooth/train/checkpoint_dir.h"
#include "sdxl_dreambooth/util/strings.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>

namespace fs = std::filesystem;

namespace sdxl::train {
namespace {

using io::H5Group;
using io::H5Object;
using io::H5Type;

torch::Tensor cpu_contiguous(const torch::Tensor& t, torch::Dtype dtype) {
  return t.detach().to(torch::kCPU, dtype).contiguous();
}

H5Object write_tensor(H5Group& g, const std::string& name, const torch::Tensor& t) {
  if (t.scalar_type() == torch::kByte) {
    const torch::Tensor c = cpu_contiguous(t, torch::kByte);
    return g.write_array(name, H5Type::kUInt8, c.sizes().vec(), c.data_ptr());
  }
  const torch::Tensor c = cpu_contiguous(t, torch::kFloat);
  return g.write_array(name, H5Type::kFloat32, c.sizes().vec(), c.data_ptr());
}

// Counts the datasets read and those a checksum covered (every read verifies it).
torch::Tensor read_tensor(const H5Group& g, const std::string& name, H5Type expected, Integrity& integrity) {
  ++integrity.datasets;
  if (g.open_dataset(name).has_checksum()) ++integrity.checksummed;
  io::H5Array a = g.read_array(name);
  if (a.type != expected) {
    throw Error(g.file() + ":" + g.path() + "/" + name + ": expected " + io::h5_type_name(expected) + ", found " +
                io::h5_type_name(a.type));
  }
  const auto dtype = expected == H5Type::kUInt8 ? torch::kByte : torch::kFloat;
  return torch::from_blob(a.bytes.data(), a.shape, torch::TensorOptions().dtype(dtype)).clone();
}

template <typename T>
void write_column(H5Group& g, const std::string& name, const std::vector<T>& v) {
  const H5Type type = std::is_same_v<T, std::int64_t> ? H5Type::kInt64 : H5Type::kFloat64;
  g.write_array(name, type, {static_cast<std::int64_t>(v.size())}, v.data());
}

template <typename T>
std::vector<T> read_column(const H5Group& g, const std::string& name, std::size_t expected_rows) {
  const H5Type type = std::is_same_v<T, std::int64_t> ? H5Type::kInt64 : H5Type::kFloat64;
  const io::H5Array a = g.read_array(name);
  if (a.type != type || a.shape.size() != 1 || static_cast<std::size_t>(a.shape[0]) != expected_rows) {
    throw Error(g.file() + ":" + g.path() + "/" + name + ": expected " + std::to_string(expected_rows) + " " +
                io::h5_type_name(type) + " values");
  }
  std::vector<T> v(expected_rows);
  if (expected_rows) std::memcpy(v.data(), a.bytes.data(), a.bytes.size());
  return v;
}

std::string sample_group_name(std::int64_t step) { return "step_" + std::to_string(step); }

}  // namespace

const ModelAdapters* Checkpoint::find(const std::string& model) const {
  for (const auto& a : adapters) {
    if (a.model == model) return &a;
  }
  return nullptr;
}

std::int64_t Checkpoint::lora_parameter_count() const {
  std::int64_t n = 0;
  for (const auto& a : adapters) {
    for (const auto& p : a.params) n += p.weight.numel();
  }
  return n;
}

namespace {

void write_config(H5Group& root, const Checkpoint& c) {
  H5Group config = root.create_group("config");
  config.write_text("toml", c.config_toml);
  for (const auto& [k, v] : c.provenance) config.set_attr(k, v);
  std::vector<std::string> files;
  for (const auto& f : c.base_model_files) files.push_back(f.to_line());
  config.set_attr("base_model_files", files);
}

void write_state(H5Group& root, const TrainingState& s) {
  H5Group state = root.create_group("state");
  state.set_attr("step", s.step);
  state.set_attr("max_steps", s.max_steps);
  state.set_attr("epoch", s.epoch);
  state.set_attr("samples_seen", s.samples_seen);
  state.set_attr("world_size", s.world_size);
  state.set_attr("data_position", s.data_position);
  state.set_attr("seed", static_cast<std::int64_t>(s.seed));
  state.set_attr("rng", std::string("every random stream derives from seed (splitmix64): noise and timesteps per "
                                    "(rank, step), LoRA init, crops/flips per rank; the data order per (seed, epoch)"));
  state.set_attr("lr_scheduler", s.lr_scheduler);
  state.set_attr("lr", s.lr);
  state.set_attr("loss_scale", s.loss_scale);
  state.set_attr("loss_scale_good_steps", s.loss_scale_good_steps);
  state.set_attr("skipped_steps", s.skipped_steps);
}

// /lora/MODEL/MODULE/lora_A|B(|lora_magnitude_vector) and /optimizer/MODEL/MODULE/<same>/<state name>.
void write_model_adapters(H5Group& lora, H5Group& optimizer, const ModelAdapters& a,
                          const std::vector<std::string>& state_names) {
  H5Group m = lora.create_group(a.model);
  m.set_attr("rank", a.rank);
  m.set_attr("alpha", a.alpha);
  m.set_attr("targets", a.targets);
  if (a.dora) m.set_attr("dora", std::int64_t{1});
  if (a.conv_rank > 0) {
    m.set_attr("conv_rank", a.conv_rank);
    m.set_attr("conv_alpha", a.conv_alpha);
  }
  if (a.layers_per_block > 0) m.set_attr("layers_per_block", a.layers_per_block);
  H5Group om = optimizer.create_group(a.model);
  om.set_attr("step", a.optimizer_steps);
  om.set_attr("peak_lr", a.peak_lr);
  std::unique_ptr<H5Group> module, opt_module;
  std::string current;
  for (const auto& p : a.params) {
    if (!module || p.module != current) {
      current = p.module;
      module.reset();
      opt_module.reset();
      module = std::make_unique<H5Group>(m.create_group(p.module));
      opt_module = std::make_unique<H5Group>(om.create_group(p.module));
    }
    write_tensor(*module, p.half, p.weight);
    H5Group half = opt_module->create_group(p.half);
    for (const auto& name : state_names) {
      const auto it = p.state.find(name);
      write_tensor(half, name, it != p.state.end() ? it->second : torch::zeros_like(p.weight));
    }
  }
}

void write_adapters(H5Group& root, const Checkpoint& c) {
  H5Group lora = root.create_group("lora");
  H5Group optimizer = root.create_group("optimizer");
  optimizer.set_attr("type", c.optimizer_type);
  optimizer.set_attr("state", c.optimizer_state);
  for (const auto& [name, value] : c.optimizer_scalars) optimizer.set_attr(name, value);
  optimizer.set_attr("beta1", c.optimizer.beta1);
  optimizer.set_attr("beta2", c.optimizer.beta2);
  optimizer.set_attr("eps", c.optimizer.eps);
  optimizer.set_attr("weight_decay", c.optimizer.weight_decay);
  if (const ModelAdapters* unet = c.find("unet")) {
    lora.set_attr("rank", unet->rank);
    lora.set_attr("alpha", unet->alpha);
    lora.set_attr("targets", unet->targets);
  }
  std::vector<std::string> models;
  for (const auto& a : c.adapters) models.push_back(a.model);
  lora.set_attr("models", models);
  for (const auto& a : c.adapters) write_model_adapters(lora, optimizer, a, c.optimizer_state);
}

// /embeddings/clip_l|clip_g and /optimizer/embeddings/clip_l|clip_g/<state name>.
void write_tokens(H5Group& root, const TrainedTokens& t, const std::vector<std::string>& state_names) {
  H5Group e = root.create_group("embeddings");
  std::vector<std::string> names;
  for (const auto& entry : t.abstractions.entries()) names.push_back(entry.first);
  e.set_attr("abstractions", names);
  e.set_attr("tokens", t.abstractions.tokens());
  H5Group optimizer = root.open_group("optimizer");
  H5Group oe = optimizer.create_group("embeddings");
  oe.set_attr("step", t.optimizer_steps);
  oe.set_attr("peak_lr", t.peak_lr);
  for (const auto& p : t.params) {
    write_tensor(e, p.half, p.weight);
    H5Group half = oe.create_group(p.half);
    for (const auto& name : state_names) {
      const auto it = p.state.find(name);
      write_tensor(half, name, it != p.state.end() ? it->second : torch::zeros_like(p.weight));
    }
  }
}

void write_metrics(H5Group& root, const std::vector<MetricsRow>& rows) {
  H5Group metrics = root.create_group("metrics");
  std::vector<std::int64_t> steps;
  std::vector<double> loss, lr, grad_norm, seconds;
  for (const auto& r : rows) {
    steps.push_back(r.step);
    loss.push_back(r.loss);
    lr.push_back(r.lr);
    grad_norm.push_back(r.grad_norm);
    seconds.push_back(r.step_seconds);
  }
  write_column(metrics, "step", steps);
  write_column(metrics, "loss", loss);
  write_column(metrics, "lr", lr);
  write_column(metrics, "grad_norm", grad_norm);
  write_column(metrics, "step_seconds", seconds);
}

// What H5IMmake_image_24bit writes, so HDFView and friends show the dataset as a picture.
void mark_as_image(H5Object& ds) {
  ds.set_fixed_attr("CLASS", "IMAGE");
  ds.set_fixed_attr("IMAGE_VERSION", "1.2");
  ds.set_fixed_attr("IMAGE_SUBCLASS", "IMAGE_TRUECOLOR");
  ds.set_fixed_attr("INTERLACE_MODE", "INTERLACE_PIXEL");
}

void write_samples(H5Group& root, const std::vector<SampleImage>& images_in, const torch::Tensor& progress_grid) {
  H5Group samples = root.create_group("samples");
  if (progress_grid.defined()) {
    H5Object ds = write_tensor(samples, "progress", progress_grid.to(torch::kByte));
    mark_as_image(ds);
  }
  std::map<std::int64_t, std::vector<const SampleImage*>> by_step;
  for (const auto& img : images_in) by_step[img.step].push_back(&img);
  for (const auto& [step, images] : by_step) {
    H5Group g = samples.create_group(sample_group_name(step));
    for (std::size_t k = 0; k < images.size(); ++k) {
      const SampleImage& img = *images[k];
      if (img.rgb.dim() != 3 || img.rgb.size(2) != 3) {
        throw Error("internal: sample image of step " + std::to_string(step) + " is not H x W x 3");
      }
      H5Object ds = write_tensor(g, std::to_string(k), img.rgb.to(torch::kByte));
      mark_as_image(ds);
      ds.set_attr("prompt", img.prompt);
      ds.set_attr("prompt_index", img.prompt_index);
      ds.set_attr("image_index", img.image_index);
      ds.set_attr("seed", static_cast<std::int64_t>(img.seed));
    }
  }
}

void read_config(const H5Group& root, const std::string& path, Checkpoint& c) {
  const H5Group config = root.open_group("config");
  ++c.integrity.datasets;
  if (config.open_dataset("toml").has_checksum()) ++c.integrity.checksummed;
  c.config_toml = config.read_text("toml");
  for (const auto& name : config.attr_names()) {
    if (name == "base_model_files") {
      for (const auto& line : config.attr_strings(name)) {
        auto f = model::WeightFileFingerprint::from_line(line);
        if (!f) throw Error(path + ":/config: bad base_model_files entry " + util::quoted(line));
        c.base_model_files.push_back(*f);
      }
    } else {
      c.provenance[name] = config.attr_string(name);
    }
  }
}

TrainingState read_state(const H5Group& root, const std::string& path) {
  const H5Group state = root.open_group("state");
  TrainingState s;
  s.step = state.attr_int("step");
  s.max_steps = state.attr_int("max_steps");
  s.epoch = state.attr_int("epoch");
  s.samples_seen = state.attr_int("samples_seen");
  s.world_size = state.attr_int("world_size");
  s.data_position = state.attr_int("data_position");
  s.seed = static_cast<std::uint64_t>(state.attr_int("seed"));
  s.lr_scheduler = state.attr_string("lr_scheduler");
  s.lr = state.attr_double("lr");
  s.loss_scale = state.attr_double("loss_scale");
  s.loss_scale_good_steps = state.attr_int("loss_scale_good_steps");
  s.skipped_steps = state.attr_int("skipped_steps");
  if (s.step < 0 || s.world_size < 1) throw Error(path + ":/state: step or world_size out of range");
  return s;
}

// One module's lora_A and lora_B (and DoRA's magnitude), checked against the rank, with their
// moments when `om`.
// Adapters and moments are finite in any checkpoint this program writes (a diverged step
// ends the run before it is saved): anything else is corruption.
void require_finite(const torch::Tensor& t, const std::string& where) {
  if (!torch::isfinite(t).all().item<bool>()) {
    throw Error(where + ": non-finite values (the file is damaged)");
  }
}

void read_module(const H5Group& m, const std::string& module, const H5Group* om,
                 const std::vector<std::string>& state_names, ModelAdapters& a, Integrity& integrity) {
  const H5Group g = m.open_group(module);
  std::vector<std::string> halves{"lora_A", "lora_B"};
  if (a.dora) halves.emplace_back("lora_magnitude_vector");
  std::int64_t out_features = 0, rank = a.rank, a_dim = 2;
  for (const std::string& half : halves) {
    AdapterParam p;
    p.module = module;
    p.half = half;
    p.weight = read_tensor(g, half, H5Type::kFloat32, integrity);
    require_finite(p.weight, g.where() + "/" + half);
    bool ok = false;
    if (half == "lora_magnitude_vector") {
      ok = p.weight.dim() == 1 && p.weight.size(0) == out_features;
    } else if (half == "lora_A") {
      // A LoCon kernel larger than 1x1 has the conv rank; linear layers and 1x1 convolutions a.rank.
      const bool wide = p.weight.dim() == 4 && p.weight.size(2) > 1;
      if (wide && a.conv_rank == 0) {
        throw Error(g.where() + "/lora_A: a convolution's adapter, but " + m.where() + " has no conv_rank attribute");
      }
      rank = wide ? a.conv_rank : a.rank;
      a_dim = p.weight.dim();
      ok = (p.weight.dim() == 2 || p.weight.dim() == 4) && p.weight.size(0) == rank;
    } else {
      // B is a matrix after a matrix A, a 1x1 kernel after a kernel A.
      ok = (a_dim == 2 ? p.weight.dim() == 2 : (p.weight.dim() == 4 && p.weight.size(2) == 1 && p.weight.size(3) == 1)) &&
           p.weight.size(1) == rank;
      if (ok) out_features = p.weight.size(0);
    }
    if (!ok) {
      throw Error(g.where() + "/" + half + ": shape " + util::shape_string(p.weight.sizes().vec()) +
                  (half == "lora_magnitude_vector" ? " does not fit lora_B's " + std::to_string(out_features) +
                                                         " output features"
                                                   : " does not fit rank " + std::to_string(rank)));
    }
    if (om) {
      const H5Group h = om->open_group(module).open_group(half);
      for (const auto& name : state_names) {
        torch::Tensor t = read_tensor(h, name, H5Type::kFloat32, integrity);
        require_finite(t, h.where() + "/" + name);
        if (!t.sizes().equals(p.weight.sizes())) {
          throw Error(h.where() + "/" + name + ": shape " + util::shape_string(t.sizes().vec()) + ", not that of " +
                      m.path() + "/" + module + "/" + half);
        }
        p.state[name] = std::move(t);
      }
    }
    a.params.push_back(std::move(p));
  }
}

ModelAdapters read_model_adapters(const H5Group& lora, const H5Group& optimizer, const std::string& model,
                                  bool with_optimizer, const std::vector<std::string>& state_names,
                                  Integrity& integrity) {
  const H5Group m = lora.open_group(model);
  ModelAdapters a;
  a.model = model;
  a.rank = m.attr_int("rank");
  a.alpha = m.attr_double("alpha");
  if (a.rank < 1 || !std::isfinite(a.alpha) || a.alpha <= 0) {
    throw Error(m.where() + ": attributes rank " + std::to_string(a.rank) + ", alpha " + util::format_number(a.alpha) +
                "; expected a rank >= 1 and a finite alpha > 0");
  }
  a.targets = m.attr_strings("targets");
  a.dora = m.has_attr("dora") && m.attr_int("dora") != 0;
  if (m.has_attr("layers_per_block")) a.layers_per_block = m.attr_int("layers_per_block");
  if (m.has_attr("conv_rank")) {
    a.conv_rank = m.attr_int("conv_rank");
    a.conv_alpha = m.attr_double("conv_alpha");
    if (a.conv_rank < 1 || !std::isfinite(a.conv_alpha) || a.conv_alpha <= 0) {
      throw Error(m.where() + ": attributes conv_rank " + std::to_string(a.conv_rank) + ", conv_alpha " +
                  util::format_number(a.conv_alpha) + "; expected a rank >= 1 and a finite alpha > 0");
    }
  }
  std::unique_ptr<H5Group> om;
  if (with_optimizer) {
    om = std::make_unique<H5Group>(optimizer.open_group(model));
    a.optimizer_steps = om->attr_int("step");
    a.peak_lr = om->attr_double("peak_lr");
  }
  for (const auto& module : m.children()) read_module(m, module, om.get(), state_names, a, integrity);
  if (a.params.empty()) throw Error(m.where() + ": no adapters");
  return a;
}

void read_adapters(const H5Group& root, const std::string& path, bool with_optimizer, Checkpoint& c) {
  const H5Group lora = root.open_group("lora");
  const H5Group optimizer = root.open_group("optimizer");
  c.optimizer.beta1 = optimizer.attr_double("beta1");
  c.optimizer.beta2 = optimizer.attr_double("beta2");
  c.optimizer.eps = optimizer.attr_double("eps");
  c.optimizer.weight_decay = optimizer.attr_double("weight_decay");
  // Checkpoints from before Prodigy have neither: AdamW's two moments.
  if (optimizer.has_attr("type")) c.optimizer_type = optimizer.attr_string("type");
  if (optimizer.has_attr("state")) c.optimizer_state = optimizer.attr_strings("state");
  if (c.optimizer_type == "Prodigy") {
    for (const char* name : {"d", "d_max", "d_numerator"}) c.optimizer_scalars[name] = optimizer.attr_double(name);
  } else if (c.optimizer_type != "AdamW") {
    throw Error(optimizer.where() + ": optimizer type " + util::quoted(c.optimizer_type) +
                " is not one this program writes (AdamW, Prodigy)");
  }
  for (const auto& model : lora.attr_strings("models")) {
    c.adapters.push_back(read_model_adapters(lora, optimizer, model, with_optimizer, c.optimizer_state, c.integrity));
  }
  if (c.adapters.empty()) throw Error(path + ":/lora: no adapters (attribute models is empty)");
}

TrainedTokens read_tokens(const H5Group& root, bool with_optimizer, const std::vector<std::string>& state_names,
                          Integrity& integrity) {
  const H5Group e = root.open_group("embeddings");
  const auto names = e.attr_strings("abstractions");
  const auto tokens = e.attr_strings("tokens");
  if (names.empty() || tokens.empty() || tokens.size() % names.size() != 0) {
    throw Error(e.where() + ": " + std::to_string(tokens.size()) + " tokens do not divide among " +
                std::to_string(names.size()) + " abstractions");
  }
  const std::size_t per = tokens.size() / names.size();
  std::vector<text::TokenAbstractions::Entry> entries;
  for (std::size_t k = 0; k < names.size(); ++k) {
    entries.emplace_back(names[k], std::vector<std::string>(tokens.begin() + static_cast<std::ptrdiff_t>(k * per),
                                                            tokens.begin() + static_cast<std::ptrdiff_t>((k + 1) * per)));
  }
  TrainedTokens t;
  try {
    t.abstractions = text::TokenAbstractions::checked(std::move(entries));
  } catch (const Error& err) {
    throw Error(e.where() + ": attributes abstractions/tokens: " + err.what());
  }
  std::unique_ptr<H5Group> oe;
  if (with_optimizer) {
    oe = std::make_unique<H5Group>(root.open_group("optimizer").open_group("embeddings"));
    t.optimizer_steps = oe->attr_int("step");
    t.peak_lr = oe->attr_double("peak_lr");
  }
  for (const char* half : {"clip_l", "clip_g"}) {
    AdapterParam p;
    p.module = "token_embeddings";
    p.half = half;
    p.weight = read_tensor(e, half, H5Type::kFloat32, integrity);
    require_finite(p.weight, e.where() + "/" + half);
    if (p.weight.dim() != 2 || p.weight.size(0) != static_cast<std::int64_t>(tokens.size())) {
      throw Error(e.where() + "/" + half + ": shape " + util::shape_string(p.weight.sizes().vec()) + ", expected [" +
                  std::to_string(tokens.size()) + ", hidden size] for the tokens of attribute tokens");
    }
    if (oe) {
      const H5Group h = oe->open_group(half);
      for (const auto& name : state_names) {
        torch::Tensor s = read_tensor(h, name, H5Type::kFloat32, integrity);
        require_finite(s, h.where() + "/" + name);
        if (!s.sizes().equals(p.weight.sizes())) {
          throw Error(h.where() + "/" + name + ": shape " + util::shape_string(s.sizes().vec()) + ", not that of " +
                      e.where() + "/" + half);
        }
        p.state[name] = std::move(s);
      }
    }
    t.params.push_back(std::move(p));
  }
  return t;
}

std::vector<MetricsRow> read_metrics(const H5Group& root) {
  const H5Group metrics = root.open_group("metrics");
  const io::H5Array steps = metrics.read_array("step");
  if (steps.shape.size() != 1) throw Error(metrics.where() + "/step: expected one column");
  const auto n = static_cast<std::size_t>(steps.shape[0]);
  const auto step = read_column<std::int64_t>(metrics, "step", n);
  const auto loss = read_column<double>(metrics, "loss", n);
  const auto lr = read_column<double>(metrics, "lr", n);
  const auto grad_norm = read_column<double>(metrics, "grad_norm", n);
  const auto seconds = read_column<double>(metrics, "step_seconds", n);
  std::vector<MetricsRow> rows;
  for (std::size_t i = 0; i < n; ++i) rows.push_back({step[i], loss[i], lr[i], grad_norm[i], seconds[i]});
  return rows;
}

std::vector<SampleImage> read_samples(const H5Group& root, bool with_pixels, Integrity& integrity) {
  const H5Group samples = root.open_group("samples");
  std::vector<SampleImage> out;
  for (const auto& group : samples.children()) {
    long long step_number = 0;
    if (std::sscanf(group.c_str(), "step_%lld", &step_number) != 1) continue;
    const H5Group g = samples.open_group(group);
    for (const auto& name : g.children()) {
      SampleImage img;
      img.step = step_number;
      const H5Object ds = g.open_dataset(name);
      img.prompt = ds.attr_string("prompt");
      img.prompt_index = ds.attr_int("prompt_index");
      img.image_index = ds.attr_int("image_index");
      img.seed = static_cast<std::uint64_t>(ds.attr_int("seed"));
      if (with_pixels) img.rgb = read_tensor(g, name, H5Type::kUInt8, integrity);
      out.push_back(std::move(img));
    }
  }
  return out;
}

void check_format(const H5Group& root, const std::string& path, Checkpoint& c) {
  if (!root.has_attr("format") || root.attr_string("format") != kCheckpointFormat) {
    throw Error(path + ": not an sdxl-dreambooth checkpoint (no format = \"" + std::string(kCheckpointFormat) +
                "\" attribute on /)");
  }
  c.format_version = root.attr_int("format_version");
  if (c.format_version > kCheckpointFormatVersion || c.format_version < 1) {
    throw Error(path + ": checkpoint format version " + std::to_string(c.format_version) +
                    "; this sdxl-dreambooth reads versions 1 to " + std::to_string(kCheckpointFormatVersion),
                "it was written by a newer sdxl-dreambooth; use that version (or newer) to read it");
  }
}

}  // namespace

void write_checkpoint_file(const std::string& path, const Checkpoint& c) {
  io::H5File file = io::H5File::create(path);
  {
    H5Group& root = file.root();
    root.set_attr("format", std::string(kCheckpointFormat));
    root.set_attr("format_version", c.format_version);
    root.set_attr("step", c.state.step);
    write_config(root, c);
    write_state(root, c.state);
    write_adapters(root, c);
    if (c.tokens) write_tokens(root, *c.tokens, c.optimizer_state);
    write_metrics(root, c.metrics);
    write_samples(root, c.samples, c.progress_grid);
  }
  file.close();
}

Checkpoint read_checkpoint_file(const std::string& path, const ReadOptions& options) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    throw UsageError(util::quoted(path) + " is a folder, not a checkpoint file",
                     "give one of its checkpoint-N.h5 files (the newest has the largest N)");
  }
  if (!fs::exists(path, ec)) throw UsageError(path + ": no such file");
  io::H5File file = io::H5File::open_read_only(path);
  Checkpoint c;
  {
    const H5Group& root = file.root();
    check_format(root, path, c);
    read_config(root, path, c);
    c.state = read_state(root, path);
    read_adapters(root, path, options.optimizer, c);
    if (root.has("embeddings")) c.tokens = read_tokens(root, options.optimizer, c.optimizer_state, c.integrity);
    c.metrics = read_metrics(root);
    c.samples = read_samples(root, options.samples, c.integrity);
    if (options.samples && root.open_group("samples").has("progress")) {
      c.progress_grid = read_tensor(root.open_group("samples"), "progress", H5Type::kUInt8, c.integrity);
    }
  }
  file.close();
  return c;
}

fs::path save_checkpoint(const fs::path& dir, const Checkpoint& checkpoint) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error("checkpoint.dir: cannot create " + util::quoted(dir.string()) + ": " + ec.message());
  const fs::path final_path = dir / checkpoint_file_name(checkpoint.state.step);
  const fs::path tmp = final_path.string() + ".tmp";
  try {
    write_checkpoint_file(tmp.string(), checkpoint);
    io::commit_file(tmp.string(), final_path.string());
  } catch (...) {
    fs::remove(tmp, ec);
    throw;
  }
  return final_path;
}

}  // namespace sdxl::train
