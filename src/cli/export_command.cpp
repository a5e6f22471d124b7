// `export`: a checkpoint's LoRA as a safetensors file for diffusers or for kohya-style loaders
// (ComfyUI, AUTOMATIC1111).
#include "sdxl_dreambooth/cli/args.h"
#include "sdxl_dreambooth/cli/command.h"
#include "sdxl_dreambooth/build_features.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/model/lora_export.h"
#include "sdxl_dreambooth/model/token_embeddings_file.h"
#include "sdxl_dreambooth/train/checkpoint_file.h"
#include "sdxl_dreambooth/util/strings.h"

#include <toml++/toml.h>

#include <filesystem>
#include <iostream>

namespace sdxl::cli {
namespace {

std::vector<model::ModelLoraWeights> checkpoint_lora(const train::Checkpoint& c) {
  std::vector<model::ModelLoraWeights> out;
  for (const auto& a : c.adapters) {
    model::ModelLoraWeights w;
    w.model = a.model;
    w.rank = a.rank;
    w.alpha = a.alpha;
    w.layers_per_block = static_cast<int>(a.layers_per_block);
    for (const auto& p : a.params) {
      if (w.adapters.empty() || w.adapters.back().module != p.module) w.adapters.push_back({p.module, {}, {}, {}});
      model::AdapterWeights& adapter = w.adapters.back();
      (p.half == "lora_A" ? adapter.down : p.half == "lora_B" ? adapter.up : adapter.magnitude) = p.weight;
      if (p.half == "lora_A" && p.weight.dim() == 4 && p.weight.size(2) > 1) adapter.alpha = a.conv_alpha;
    }
    out.push_back(std::move(w));
  }
  return out;
}

// A file `flag` may write: a path in an existing folder, not a folder, device or pipe, and not
// an existing file without --force. Checked before anything is written.
void check_output_file(const std::string& flag, const std::string& path, bool force) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (path.empty()) throw UsageError(flag + ": expected a file path, got ''");
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty() && !fs::is_directory(parent, ec)) {
    throw UsageError(flag + " " + util::quoted(path) + ": the folder " + util::quoted(parent.string()) +
                     " does not exist");
  }
  const fs::file_status st = fs::status(path, ec);
  if (fs::is_directory(st)) {
    throw UsageError(flag + " " + util::quoted(path) + " is a folder", "give the file to write, e.g. " + path +
                                                                          "/pytorch_lora_weights.safetensors");
  }
  if (fs::exists(st) && !fs::is_regular_file(st)) {
    throw UsageError(flag + " " + util::quoted(path) + " is not a regular file (a device, pipe or socket)",
                     "write to a file");
  }
  if (fs::exists(st) && !force) {
    throw UsageError(flag + " " + util::quoted(path) + " already exists", "pass --force to replace it");
  }
}

// --embeddings names a new file: not the LoRA's, not the checkpoint.
void check_embeddings_out(const std::string& emb, const std::string& out, const std::string& ckpt, bool force) {
  std::error_code ec;
  namespace fs = std::filesystem;
  if (fs::path(emb).lexically_normal() == fs::path(out).lexically_normal() || fs::equivalent(emb, out, ec) ||
      fs::equivalent(emb, ckpt, ec)) {
    throw UsageError("--embeddings " + util::quoted(emb) + " is the same file as --out or the checkpoint",
                     "name it like the advanced diffusers script: <name>_emb.safetensors");
  }
  check_output_file("--embeddings", emb, force);
}

}  // namespace

Command make_export_command() {
  Command c;
  c.name = "export";
  c.summary = "write a checkpoint's LoRA for diffusers or ComfyUI/AUTOMATIC1111 (kohya names)";
  c.help =
      "usage: sdxl-dreambooth export CKPT.h5 --out FILE.safetensors [--format diffusers|kohya]\n"
      "         [--embeddings EMB.safetensors] [--force]\n\n"
      "diffusers (default): the file StableDiffusionXLPipeline.save_lora_weights writes\n"
      "  (unet.<module>.lora.down/up.weight, text_encoder[_2].<module>.lora_linear_layer.down/up.weight,\n"
      "  alpha/rank folded into up); load it with pipe.load_lora_weights(DIR or FILE).\n"
      "kohya: kohya sd-scripts' SDXL names (lora_unet_input_blocks_4_1_..._to_q.lora_down/lora_up.weight\n"
      "  and .alpha, lora_te1_/lora_te2_ for the text encoders), which ComfyUI's LoraLoader and\n"
      "  AUTOMATIC1111 load from their models/loras folder.\n"
      "The file's __metadata__ carries the format, rank, alpha, base model, resolution, steps and\n"
      "the program version. An existing FILE is kept unless --force.\n"
      "--embeddings also writes a pivotal-tuning checkpoint's token embeddings (clip_l, clip_g: the\n"
      "advanced diffusers script's <name>_emb.safetensors), which `generate --embeddings` and\n"
      "diffusers' load_textual_inversion read.\n";
  c.run = [](const std::vector<std::string>& argv) {
    Args args(argv, {"--force"}, {"--out", "--format", "--embeddings"});
    if (args.positionals().size() != 1) throw UsageError("export takes exactly one CKPT.h5");
    const auto out = args.option("--out");
    if (!out) throw UsageError("export: --out FILE.safetensors is required");
    const model::LoraFormat format = model::parse_lora_format(args.option_or("--format", "diffusers"));
    const std::string path = args.positionals()[0];
    std::error_code ec;
    // Whatever --force says: writing the input would destroy what is being read (links too).
    if (std::filesystem::equivalent(*out, path, ec)) {
      throw UsageError("--out " + util::quoted(*out) + " is the checkpoint being read (" + util::quoted(path) + ")",
                       "write the LoRA to another file, e.g. --out pytorch_lora_weights.safetensors");
    }
    check_output_file("--out", *out, args.flag("--force"));
    const auto emb_out = args.option("--embeddings");
    if (emb_out) check_embeddings_out(*emb_out, *out, path, args.flag("--force"));
    train::ReadOptions ro;
    ro.optimizer = false;
    ro.samples = false;
    const train::Checkpoint ckpt = train::read_checkpoint_file(path, ro);
    const auto weights = checkpoint_lora(ckpt);
    const model::ModelLoraWeights& unet = weights.front();
    std::map<std::string, std::string> meta{
        {"rank", std::to_string(unet.rank)},
        {"alpha", util::format_number(unet.alpha)},
        {"steps", std::to_string(ckpt.state.step)},
        {"software", "sdxl-dreambooth " + build_features().program_version},
        {"source_checkpoint", std::filesystem::path(path).filename().string()}};
    if (auto it = ckpt.provenance.find("base_model"); it != ckpt.provenance.end()) meta["base_model"] = it->second;
    try {
      const toml::table config = toml::parse(ckpt.config_toml);
      if (auto r = config["data"]["resolution"].value<std::int64_t>()) meta["resolution"] = std::to_string(*r);
    } catch (const toml::parse_error& e) {
      throw Error(path + ":/config/toml does not parse: " + std::string(e.description()));
    }
    if (emb_out && !ckpt.tokens) {
      throw UsageError("--embeddings: " + path + " holds no token embeddings (it was not trained with "
                       "lora.train_text_encoder_ti)");
    }
    model::write_lora_file(*out, weights, format, meta);
    std::size_t adapters = 0;
    for (const auto& w : weights) adapters += w.adapters.size();
    std::cout << "wrote " << *out << " (" << model::lora_format_name(format) << ", " << adapters
              << " adapters, rank " << unet.rank << ", step " << ckpt.state.step << ")\n";
    if (emb_out) {
      model::TokenEmbeddings e{ckpt.tokens->abstractions, {}, {}};
      for (const auto& p : ckpt.tokens->params) (p.half == "clip_l" ? e.clip_l : e.clip_g) = p.weight;
      model::write_token_embeddings(*emb_out, e, meta);
      std::cout << "wrote " << *emb_out << " (token embeddings " << e.abstractions.describe() << ")\n";
    } else if (ckpt.tokens) {
      std::cerr << "note: " << path << " also holds pivotal tuning's token embeddings ("
                << ckpt.tokens->abstractions.describe()
                << "), which the LoRA needs; write them with --embeddings FILE\n";
    }
    return 0;
  };
  return c;
}

}  // namespace sdxl::cli
