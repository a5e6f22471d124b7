// `model-info` and `tokenize`: what the loaders make of a model folder, from the command line.
#include "sdxl_dreambooth/cli/args.h"
#include "sdxl_dreambooth/cli/command.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/model/component_loader.h"
#include "sdxl_dreambooth/model/scheduler_config.h"
#include "sdxl_dreambooth/model/model_location.h"
#include "sdxl_dreambooth/pipeline/sdxl_pipeline.h"
#include "sdxl_dreambooth/model/token_embeddings_file.h"
#include "sdxl_dreambooth/text/clip_tokenizer.h"
#include "sdxl_dreambooth/util/strings.h"

#include <iostream>
#include <optional>

namespace fs = std::filesystem;

namespace sdxl::cli {

namespace {

std::string count(std::int64_t n) {
  std::string s = std::to_string(n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<std::size_t>(i), ",");
  return s;
}

std::int64_t parameter_count(torch::nn::Module& m) {
  std::int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

// The scheduler config as the program reads it, and what it does with a class it has no
// sampler for (said, not silently accepted).
void print_scheduler(const model::SchedulerConfig& scheduler) {
  std::cout << "  scheduler: " << scheduler.class_name << ", " << scheduler.num_train_timesteps
            << " training timesteps, betas " << util::format_number(scheduler.beta_start) << " to "
            << util::format_number(scheduler.beta_end) << " (" << scheduler.beta_schedule << "), "
            << scheduler.prediction_type << "\n";
  if (!scheduler.edm() && scheduler.class_name != "EulerDiscreteScheduler" && scheduler.class_name != "DDPMScheduler") {
    std::cout << "    note: " << scheduler.class_name << " is not one of this program's samplers; generate and "
              << "validation use --scheduler / validation.scheduler, training the schedule of its betas (as "
              << "diffusers' script, which loads any scheduler folder as DDPMScheduler)\n";
  }
}

}  // namespace

Command make_model_info_command() {
  Command c;
  c.name = "model-info";
  c.summary = "resolve an SDXL pipeline (folder or offline hub id) and check every component loads";
  c.help =
      "usage: sdxl-dreambooth model-info MODEL [--vae VAE] [--variant fp16] [--revision main]\n\n"
      "MODEL is a diffusers SDXL folder or a hub id (ORG/NAME) resolved offline in the Hugging Face\n"
      "cache ($HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub). Builds every network from its\n"
      "config.json, loads its weights strictly (every missing, unexpected or mis-shaped tensor is\n"
      "reported) and prints the resolved folder, weight files, parameter counts and tokenizers.\n";
  c.run = [](const std::vector<std::string>& argv) {
    Args args(argv, {}, {"--vae", "--variant", "--revision"});
    if (args.positionals().size() != 1) throw UsageError("model-info takes exactly one MODEL");
    const std::string revision = args.option_or("--revision", "main");
    const model::PipelineFolder pipe = model::open_pipeline(args.positionals()[0], revision);
    model::ComponentLoadOptions opts;
    opts.variant = args.option("--variant");
    std::cout << "pipeline: " << pipe.root.string() << "\n";
    const fs::path vae_dir = args.option("--vae") ? model::resolve_component_dir(*args.option("--vae"), revision, "vae")
                                                  : pipe.component("vae");
    for (const auto& w : model::variant_fallback_warnings(
             {pipe.component("unet"), vae_dir, pipe.component("text_encoder"), pipe.component("text_encoder_2")},
             opts.variant)) {
      std::cout << "  warning: " << w << "\n";
    }
    auto report = [&](const std::string& name, torch::nn::Module& m, const model::ComponentInfo& info) {
      std::cout << "  " << name << ": " << count(parameter_count(m)) << " parameters, " << info.report.loaded
                << " tensors from " << info.weights;
      if (!info.report.ignored.empty()) std::cout << " (ignored: " << util::join(info.report.ignored, ", ") << ")";
      std::cout << "\n";
    };
    model::ComponentInfo info;
    auto unet = model::load_unet(pipe.component("unet"), opts, &info);
    report("unet", *unet, info);
    auto vae = model::load_vae(vae_dir, opts, &info);
    report("vae", *vae, info);
    auto te1 = model::load_text_encoder(pipe.component("text_encoder"), opts, &info);
    report("text_encoder", *te1, info);
    auto te2 = model::load_text_encoder(pipe.component("text_encoder_2"), opts, &info);
    report("text_encoder_2", *te2, info);
    const auto scheduler = model::SchedulerConfig::load(pipe.component("scheduler") / "scheduler_config.json");
    print_scheduler(scheduler);
    const auto tok_1 = text::ClipTokenizer::load(pipe.component("tokenizer"));
    const auto tok_2 = text::ClipTokenizer::load(pipe.component("tokenizer_2"));
    pipeline::check_tokenizers(tok_1, tok_2, pipe.component("tokenizer"), pipe.component("tokenizer_2"), te1->config(),
                               te2->config());
    for (const auto* tok : {&tok_1, &tok_2}) {
      std::cout << "  " << (tok == &tok_1 ? "tokenizer" : "tokenizer_2") << ": "
                << count(static_cast<std::int64_t>(tok->vocab_size())) << " tokens, pad id " << tok->pad_id()
                << ", max length " << tok->model_max_length() << "\n";
    }
    return 0;
  };
  return c;
}

Command make_tokenize_command() {
  Command c;
  c.name = "tokenize";
  c.summary = "show the token ids both SDXL tokenizers give a prompt";
  c.help =
      "usage: sdxl-dreambooth tokenize MODEL --prompt TEXT [--prompt TEXT]... [--revision main]\n"
      "         [--embeddings FILE]\n\n"
      "Prints the 77 ids of tokenizer/ and tokenizer_2/ for each prompt, and how many of the 75\n"
      "content tokens it uses (longer prompts are truncated, as in diffusers). --embeddings adds\n"
      "pivotal tuning's tokens (and abstractions such as TOK) as `generate --embeddings` does.\n";
  c.run = [](const std::vector<std::string>& argv) {
    Args args(argv, {}, {"--revision", "--embeddings"}, {"--prompt"});
    if (args.positionals().size() != 1) throw UsageError("tokenize takes exactly one MODEL");
    if (args.repeated("--prompt").empty()) throw UsageError("tokenize needs at least one --prompt");
    const model::PipelineFolder pipe = model::open_pipeline(args.positionals()[0], args.option_or("--revision", "main"));
    const auto scheduler = model::SchedulerConfig::load(pipe.component("scheduler") / "scheduler_config.json");
    print_scheduler(scheduler);
    std::optional<model::TokenEmbeddings> embeddings;
    if (auto file = args.option("--embeddings")) embeddings = model::read_token_embeddings(*file);
    for (const char* t : {"tokenizer", "tokenizer_2"}) {
      auto tok = text::ClipTokenizer::load(pipe.component(t));
      if (embeddings) tok.add_tokens(embeddings->abstractions);
      for (const auto& prompt : args.repeated("--prompt")) {
        const auto used = tok.encode(prompt).size();
        std::cout << t << " " << util::quoted(prompt) << " (" << used << " tokens"
                  << (used > tok.model_max_length() - 2 ? ", truncated" : "") << "):";
        for (auto id : tok.tokenize(prompt)) std::cout << " " << id;
        std::cout << "\n";
      }
    }
    return 0;
  };
  return c;
}

}  // namespace sdxl::cli
