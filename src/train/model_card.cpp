#include "sdxl_dreambooth/train/model_card.h"

#include "sdxl_dreambooth/config/data_subsets.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/io/durable_file.h"
#include "sdxl_dreambooth/io/png_writer.h"
#include "sdxl_dreambooth/text/token_abstractions.h"
#include "sdxl_dreambooth/train/lora_outputs.h"
#include "sdxl_dreambooth/util/strings.h"

#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;

namespace sdxl::train {
namespace {

// A YAML single-quoted scalar ('' for a quote), safe for any prompt.
std::string yaml_quoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += "''";
    else if (c == '\n' || c == '\r') out += ' ';
    else out += c;
  }
  return out + "'";
}

// `a photo of sks dog`, or `a` (subset 1), `b` (subset 2) with several concepts.
std::string trigger_list(const config::DataConfig& data) {
  const auto prompts = config::instance_prompts(data);
  std::string out;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    out += (i == 0 ? "" : i + 1 == prompts.size() ? " or " : ", ") + ("`" + prompts[i] + "`");
  }
  return out;
}

std::string front_matter(const config::RunConfig& cfg, const ModelCardFacts& facts) {
  std::ostringstream y;
  y << "---\ntags:\n- stable-diffusion-xl\n- stable-diffusion-xl-diffusers\n- text-to-image\n- diffusers\n"
    << "- lora\n- template:sd-lora\n";
  if (facts.samples && !facts.samples->empty()) {
    y << "widget:\n";
    for (std::size_t k = 0; k < facts.samples->size(); ++k) {
      y << "- text: " << yaml_quoted((*facts.samples)[k].prompt) << "\n  output:\n    url: image_" << k << ".png\n";
    }
  }
  y << "base_model: " << yaml_quoted(cfg.model.pretrained) << "\n"
    << "instance_prompt: " << yaml_quoted(config::trigger_words(cfg.data)) << "\n"
    << "license: " << cfg.output.license << "\n---\n";
  return y.str();
}

std::string settings_table(const config::RunConfig& cfg, const RunSettings& s, const ModelCardFacts& facts) {
  std::ostringstream t;
  t << "| setting | value |\n|---|---|\n"
    << "| base model | `" << cfg.model.pretrained << "`" << (cfg.model.vae ? " (VAE `" + *cfg.model.vae + "`)" : "")
    << " |\n"
    << "| resolution | " << s.resolution << " |\n"
    << "| steps | " << facts.steps << " of " << facts.max_steps << " |\n"
    << "| batch per rank x accumulation | " << cfg.train.batch_size << " x " << cfg.train.grad_accum << " |\n"
    << "| learning rate | " << util::format_number(cfg.train.learning_rate)
    << (cfg.train.scale_lr ? " x accumulation x batch x ranks" : "") << " (" << cfg.train.lr_scheduler << ") |\n"
    << "| optimizer | " << (cfg.optimizer.kind == "prodigy" ? "Prodigy" : "AdamW") << " |\n"
    << "| " << (cfg.lora.use_dora ? "DoRA" : "LoRA") << " rank, alpha | " << cfg.lora.rank << ", "
    << util::format_number(cfg.lora.alpha.value_or(static_cast<double>(cfg.lora.rank))) << " |\n"
    << "| text encoders trained | "
    << (cfg.lora.train_text_encoder ? "yes (LoRA)"
                                    : cfg.lora.train_text_encoder_ti ? "pivotal tuning (new token embeddings)" : "no")
    << " |\n"
    << "| prior preservation | " << (cfg.prior.enabled ? "yes" : "no") << " |\n"
    << "| precision | " << (s.mixed_precision == "no" ? std::string("fp32") : s.mixed_precision) << " |\n"
    << "| seed | " << s.seed << " |\n";
  if (facts.last_loss) t << "| loss at the last step | " << util::format_with("%.4f", *facts.last_loss) << " |\n";
  return t.str();
}

}  // namespace

std::string model_card_text(const config::RunConfig& cfg, const RunSettings& s, const ModelCardFacts& facts) {
  const std::string name = run_name(cfg.output);
  const text::TokenAbstractions tokens =
      cfg.lora.train_text_encoder_ti
          ? text::TokenAbstractions::parse(cfg.lora.token_abstraction, cfg.lora.num_new_tokens_per_abstraction)
          : text::TokenAbstractions();
  std::ostringstream md;
  md << front_matter(cfg, facts) << "\n# SDXL LoRA DreamBooth - " << name << "\n\n<Gallery />\n\n"
     << "## Model description\n\nLoRA adaption weights for `" << cfg.model.pretrained
     << "`, trained with [DreamBooth](https://dreambooth.github.io/) by sdxl-dreambooth.\n\n"
     << "## Trigger words\n\nYou should use " << trigger_list(cfg.data) << " to trigger the image generation.\n\n";
  if (!tokens.empty()) {
    md << "Pivotal tuning trained new tokens: write them where the abstraction stood (" << tokens.describe()
       << "); `" << name << "_emb.safetensors` holds their embeddings, which the LoRA needs.\n\n";
  }
  md << "## Use it\n\nWith diffusers:\n\n```py\nfrom diffusers import AutoPipelineForText2Image\nimport torch\n"
     << (tokens.empty() ? "" : "from safetensors.torch import load_file\n") << "\n"
     << "pipeline = AutoPipelineForText2Image.from_pretrained('stabilityai/stable-diffusion-xl-base-1.0', "
     << "torch_dtype=torch.float16).to('cuda')\n"
     << "pipeline.load_lora_weights('.', weight_name='pytorch_lora_weights.safetensors')\n";
  if (!tokens.empty()) {
    // ref: the advanced diffusers script's model card.
    std::string list;
    for (const auto& t : tokens.tokens()) list += (list.empty() ? "" : ", ") + yaml_quoted(t);
    md << "state_dict = load_file('" << name << "_emb.safetensors')\n"
       << "pipeline.load_textual_inversion(state_dict['clip_l'], token=[" << list
       << "], text_encoder=pipeline.text_encoder, tokenizer=pipeline.tokenizer)\n"
       << "pipeline.load_textual_inversion(state_dict['clip_g'], token=[" << list
       << "], text_encoder=pipeline.text_encoder_2, tokenizer=pipeline.tokenizer_2)\n";
  }
  md << "image = pipeline(" << yaml_quoted(tokens.apply(config::instance_prompts(cfg.data).front()))
     << ").images[0]\n```\n\n";
  if (cfg.output.kohya) {
    md << "In ComfyUI or AUTOMATIC1111: put `" << name << ".safetensors` into `models/loras` (ComfyUI, then a *Load "
       << "LoRA* node) or `models/Lora` (AUTOMATIC1111, then `<lora:" << name << ":1>` in the prompt).\n\n";
    if (!tokens.empty()) {
      md << "Put `" << name << "_emb.safetensors` into `models/embeddings` too and write its name where the "
         << "new tokens go (the whole embedding stands for them).\n\n";
    }
    if (cfg.lora.use_dora) {
      md << "This is a DoRA: its `dora_scale` tensors hold one magnitude per output feature (LyCORIS's "
         << "`wd_on_out` layout), which ComfyUI applies; AUTOMATIC1111 reads `dora_scale` on the input axis "
         << "only and does not apply it correctly.\n\n";
    }
  }
  if (facts.compare_grid) {
    md << "## Base model vs fine-tuned\n\nThe validation prompts with the same seeds, without (left) and with "
       << "(right) the LoRA, at step " << facts.steps << ":\n\n![base model vs fine-tuned](compare.png)\n\n";
  }
  md << "## Training\n\n" << settings_table(cfg, s, facts);
  return md.str();
}

void write_model_card(const config::RunConfig& cfg, const RunSettings& s, const ModelCardFacts& facts) {
  if (facts.samples) {
    for (std::size_t k = 0; k < facts.samples->size(); ++k) {
      const SampleImage& img = (*facts.samples)[k];
      const torch::Tensor rgb = img.rgb.contiguous();
      const fs::path path = s.output / ("image_" + std::to_string(k) + ".png");
      io::write_png((path.string() + ".tmp"), rgb.data_ptr<std::uint8_t>(), static_cast<int>(rgb.size(1)),
                    static_cast<int>(rgb.size(0)), {{"prompt", img.prompt}, {"seed", std::to_string(img.seed)}});
      io::commit_file(path.string() + ".tmp", path.string());
    }
  }
  const fs::path path = s.output / "README.md";
  const std::string tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary);
    out << model_card_text(cfg, s, facts);
    out.close();
    if (!out) throw Error("cannot write " + tmp);
  }
  io::commit_file(tmp, path.string());
}

}  // namespace sdxl::train
