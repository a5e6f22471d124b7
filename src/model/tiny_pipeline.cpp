#include "sdxl_dreambooth/model/tiny_pipeline.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/io/safetensors_torch.h"
#include "sdxl_dreambooth/model/clip_text_config.h"
#include "sdxl_dreambooth/model/json_config.h"
#include "sdxl_dreambooth/model/unet_config.h"
#include "sdxl_dreambooth/model/vae_config.h"
#include "sdxl_dreambooth/nn/autoencoder_kl.h"
#include "sdxl_dreambooth/nn/clip_text_model.h"
#include "sdxl_dreambooth/nn/unet_2d_condition.h"
#include "sdxl_dreambooth/util/strings.h"

#include <nlohmann/json.hpp>

#include <fstream>

namespace fs = std::filesystem;
using nlohmann::json;

namespace sdxl::model {
namespace {

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  out.close();
  if (!out) throw_errno("write", path.string());
}

void write_json(const fs::path& path, const json& j) { write_text(path, j.dump(2) + "\n"); }

// Every parameter and buffer under its registered name (= the checkpoint key).
void write_weights(const fs::path& path, torch::nn::Module& m) {
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& p : m.named_parameters(true)) tensors.emplace_back(p.key(), p.value().detach().contiguous());
  for (const auto& b : m.named_buffers(true)) tensors.emplace_back(b.key(), b.value().detach().contiguous());
  io::write_safetensors(path.string(), tensors, {{"format", "pt"}});
}

// GPT-2/CLIP's reversible byte -> printable character map, in its order.
std::vector<std::string> byte_symbols() {
  std::vector<int> bytes;
  for (int b = '!'; b <= '~'; ++b) bytes.push_back(b);
  for (int b = 0xA1; b <= 0xAC; ++b) bytes.push_back(b);
  for (int b = 0xAE; b <= 0xFF; ++b) bytes.push_back(b);
  std::vector<int> codes = bytes;
  for (int b = 0, n = 0; b < 256; ++b) {
    if (std::find(bytes.begin(), bytes.end(), b) == bytes.end()) {
      bytes.push_back(b);
      codes.push_back(256 + n++);
    }
  }
  std::vector<std::string> out;
  for (int cp : codes) {  // UTF-8 of the code point
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    out.push_back(s);
  }
  return out;
}

void write_tokenizer(const fs::path& dir, const std::string& pad) {
  fs::create_directories(dir);
  json vocab = json::object();
  const auto symbols = byte_symbols();
  int id = 0;
  for (const auto& s : symbols) vocab[s] = id++;
  for (const auto& s : symbols) vocab[s + "</w>"] = id++;
  vocab["<|startoftext|>"] = id++;
  vocab["<|endoftext|>"] = id++;  // the highest id: SDXL's encoders pool at argmax(ids)
  write_text(dir / "vocab.json", vocab.dump() + "\n");
  write_text(dir / "merges.txt", "#version: 0.2\n");
  write_json(dir / "special_tokens_map.json", {{"bos_token", {{"content", "<|startoftext|>"}}},
                                               {"eos_token", {{"content", "<|endoftext|>"}}},
                                               {"pad_token", {{"content", pad}}},
                                               {"unk_token", {{"content", "<|endoftext|>"}}}});
  write_json(dir / "tokenizer_config.json", {{"bos_token", "<|startoftext|>"},
                                             {"do_lower_case", true},
                                             {"eos_token", "<|endoftext|>"},
                                             {"model_max_length", 77},
                                             {"pad_token", pad},
                                             {"tokenizer_class", "CLIPTokenizer"},
                                             {"unk_token", "<|endoftext|>"}});
}

constexpr int kVocabSize = 2 * 256 + 2;

json text_encoder_config(bool with_projection) {
  return {{"architectures", {with_projection ? "CLIPTextModelWithProjection" : "CLIPTextModel"}},
          {"bos_token_id", 0},
          {"eos_token_id", 2},  // SDXL's legacy value: pooling at argmax(ids), as the real configs
          {"hidden_act", with_projection ? "gelu" : "quick_gelu"},
          {"hidden_size", 32},
          {"intermediate_size", 64},
          {"layer_norm_eps", 1e-5},
          {"max_position_embeddings", 77},
          {"model_type", "clip_text_model"},
          {"num_attention_heads", 4},
          {"num_hidden_layers", 2},
          {"pad_token_id", 1},
          {"projection_dim", 32},
          {"torch_dtype", "float32"},
          {"vocab_size", kVocabSize}};
}

json unet_config() {
  // SDXL's structure (no attention at the top level, text_time conditioning, linear
  // projections) at toy width; cross_attention_dim = both encoders' hidden sizes, the
  // added-condition input = 6 time ids x 8 + the pooled projection (32).
  return {{"_class_name", "UNet2DConditionModel"},
          {"_diffusers_version", "0.27.2"},
          {"act_fn", "silu"},
          {"addition_embed_type", "text_time"},
          {"addition_embed_type_num_heads", 64},
          {"addition_time_embed_dim", 8},
          {"attention_head_dim", {2, 4, 4}},
          {"block_out_channels", {32, 64, 64}},
          {"center_input_sample", false},
          {"class_embed_type", nullptr},
          {"conv_in_kernel", 3},
          {"conv_out_kernel", 3},
          {"cross_attention_dim", 64},
          {"down_block_types", {"DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"}},
          {"downsample_padding", 1},
          {"dual_cross_attention", false},
          {"flip_sin_to_cos", true},
          {"freq_shift", 0},
          {"in_channels", 4},
          {"layers_per_block", 2},
          {"mid_block_scale_factor", 1},
          {"mid_block_type", "UNetMidBlock2DCrossAttn"},
          {"norm_eps", 1e-5},
          {"norm_num_groups", 8},
          {"num_attention_heads", nullptr},
          {"only_cross_attention", false},
          {"out_channels", 4},
          {"projection_class_embeddings_input_dim", 80},
          {"resnet_time_scale_shift", "default"},
          {"sample_size", 16},
          {"time_embedding_type", "positional"},
          {"transformer_layers_per_block", {1, 1, 2}},
          {"up_block_types", {"CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"}},
          {"upcast_attention", false},
          {"use_linear_projection", true}};
}

json vae_config() {
  return {{"_class_name", "AutoencoderKL"},
          {"_diffusers_version", "0.27.2"},
          {"act_fn", "silu"},
          {"block_out_channels", {8, 16, 16, 16}},
          {"down_block_types", {"DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"}},
          {"force_upcast", true},
          {"in_channels", 3},
          {"latent_channels", 4},
          {"layers_per_block", 1},
          {"norm_num_groups", 4},
          {"out_channels", 3},
          {"sample_size", 64},
          {"scaling_factor", 0.13025},
          {"up_block_types", {"UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"}}};
}

}  // namespace

void write_tiny_pipeline(const fs::path& dir, std::uint64_t seed) {
  if (fs::exists(dir / "model_index.json")) {
    throw UsageError(util::quoted(dir.string()) + " already holds a pipeline (model_index.json)",
                     "choose another --out, or delete it first");
  }
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec)) {
    throw UsageError("--out: " + util::quoted(dir.string()) + " is a file, not a folder", "give a new or empty folder");
  }
  fs::create_directories(dir, ec);
  // A path through a file or an unwritable folder is the caller's to fix: a usage error.
  if (ec) throw UsageError("--out: cannot create " + util::quoted(dir.string()) + ": " + ec.message());
  torch::manual_seed(seed);
  torch::NoGradGuard no_grad;
  for (const char* sub : {"unet", "vae", "text_encoder", "text_encoder_2", "scheduler"}) fs::create_directories(dir / sub);

  const json te1 = text_encoder_config(false), te2 = text_encoder_config(true);
  write_json(dir / "text_encoder" / "config.json", te1);
  write_json(dir / "text_encoder_2" / "config.json", te2);
  write_json(dir / "unet" / "config.json", unet_config());
  write_json(dir / "vae" / "config.json", vae_config());
  // Built through the same config parsers the loaders use, so the weights fit by construction.
  nn::ClipTextModel text_encoder(ClipTextConfig::load(dir / "text_encoder" / "config.json"));
  write_weights(dir / "text_encoder" / "model.safetensors", *text_encoder);
  nn::ClipTextModel text_encoder_2(ClipTextConfig::load(dir / "text_encoder_2" / "config.json"));
  write_weights(dir / "text_encoder_2" / "model.safetensors", *text_encoder_2);
  nn::UNet2DConditionModel unet(UNetConfig::load(dir / "unet" / "config.json"));
  write_weights(dir / "unet" / "diffusion_pytorch_model.safetensors", *unet);
  nn::AutoencoderKL vae(VaeConfig::load(dir / "vae" / "config.json"));
  write_weights(dir / "vae" / "diffusion_pytorch_model.safetensors", *vae);

  write_tokenizer(dir / "tokenizer", "<|endoftext|>");
  write_tokenizer(dir / "tokenizer_2", "!");
  write_json(dir / "scheduler" / "scheduler_config.json", {{"_class_name", "EulerDiscreteScheduler"},
                                                           {"beta_end", 0.012},
                                                           {"beta_schedule", "scaled_linear"},
                                                           {"beta_start", 0.00085},
                                                           {"clip_sample", false},
                                                           {"interpolation_type", "linear"},
                                                           {"num_train_timesteps", 1000},
                                                           {"prediction_type", "epsilon"},
                                                           {"sample_max_value", 1.0},
                                                           {"set_alpha_to_one", false},
                                                           {"skip_prk_steps", true},
                                                           {"steps_offset", 1},
                                                           {"timestep_spacing", "leading"},
                                                           {"use_karras_sigmas", false}});
  // Written last: a folder without it is not a pipeline, so an interrupted run is retried.
  write_json(dir / "model_index.json",
             {{"_class_name", "StableDiffusionXLPipeline"},
              {"_diffusers_version", "0.27.2"},
              {"_sdxl_dreambooth", "init-tiny, seed " + std::to_string(seed)},
              {"force_zeros_for_empty_prompt", true},
              {"scheduler", {"diffusers", "EulerDiscreteScheduler"}},
              {"text_encoder", {"transformers", "CLIPTextModel"}},
              {"text_encoder_2", {"transformers", "CLIPTextModelWithProjection"}},
              {"tokenizer", {"transformers", "CLIPTokenizer"}},
              {"tokenizer_2", {"transformers", "CLIPTokenizer"}},
              {"unet", {"diffusers", "UNet2DConditionModel"}},
              {"vae", {"diffusers", "AutoencoderKL"}}});
}

}  // namespace sdxl::model
