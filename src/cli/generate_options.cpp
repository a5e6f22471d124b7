#include "sdxl_dreambooth/cli/generate_options.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/util/strings.h"

#include <cmath>
#include <cstdlib>
#include <utility>

namespace sdxl::cli {
namespace {

std::pair<std::int64_t, std::int64_t> parse_size(const std::string& s) {
  const auto x = s.find('x');
  try {
    if (x != std::string::npos) {
      std::size_t a = 0, b = 0;
      const long long w = std::stoll(s.substr(0, x), &a), h = std::stoll(s.substr(x + 1), &b);
      if (a == x && b == s.size() - x - 1) return {w, h};
    }
  } catch (const std::exception&) {
  }
  throw UsageError("--size: expected WIDTHxHEIGHT such as 1024x1024, got " + util::quoted(s));
}

torch::Dtype parse_dtype(const std::string& s) {
  if (s == "fp32") return torch::kFloat;
  if (s == "bf16") return torch::kBFloat16;
  if (s == "fp16") return torch::kHalf;
  throw UsageError("--dtype: expected fp32, bf16 or fp16, got " + util::quoted(s));
}

pipeline::GenerationRequest parse_request(const Args& args) {
  pipeline::GenerationRequest req;
  req.prompts = args.repeated("--prompt");
  req.negative_prompt = args.option_or("--negative", "");
  req.steps = args.int_option("--steps").value_or(25);
  req.guidance_scale = args.float_option("--guidance").value_or(5.0);
  const long long seed = args.int_option("--seed").value_or(0);
  if (seed < 0) throw UsageError("--seed must be >= 0");
  req.seed = static_cast<std::uint64_t>(seed);
  std::tie(req.width, req.height) = parse_size(args.option_or("--size", "1024x1024"));
  req.images_per_prompt = args.int_option("--num-images").value_or(1);
  req.scheduler = args.option_or("--scheduler", "dpmpp2m");
  // pipeline::validate's bounds, by option name.
  if (!(req.guidance_scale >= 0 && req.guidance_scale <= pipeline::kMaxGuidanceScale)) {
    throw UsageError("--guidance: expected a number from 0 to " +
                     std::to_string(static_cast<long long>(pipeline::kMaxGuidanceScale)) + ", got " +
                     util::format_number(req.guidance_scale));
  }
  if (req.images_per_prompt < 1 || req.images_per_prompt > pipeline::kMaxImagesPerPrompt) {
    throw UsageError("--num-images: expected a whole number from 1 to " +
                     std::to_string(pipeline::kMaxImagesPerPrompt) + ", got " + std::to_string(req.images_per_prompt));
  }
  for (const std::string& p : req.prompts) {
    if (!util::is_valid_utf8(p)) throw UsageError("--prompt " + util::quoted(p) + ": not valid UTF-8 text");
  }
  if (!util::is_valid_utf8(req.negative_prompt)) {
    throw UsageError("--negative " + util::quoted(req.negative_prompt) + ": not valid UTF-8 text");
  }
  const std::string batch_arg = args.option_or("--batch-size", "auto");
  if (batch_arg != "auto") {
    char* end = nullptr;
    const long long n = std::strtoll(batch_arg.c_str(), &end, 10);
    if (batch_arg.empty() || *end != '\0' || n < 1 || n > 4096) {
      throw UsageError("--batch-size: expected auto or a whole number from 1 to 4096, got " + util::quoted(batch_arg));
    }
    req.batch_size = n;
  }
  return req;
}

// --lora, --lora-scale, --lora-mode and --compare-base, which only make sense together.
void parse_lora(const Args& args, GenerateOptions& o) {
  o.lora = args.option("--lora");
  o.lora_scale = args.float_option("--lora-scale").value_or(1.0);
  // Beyond a few hundred the weights overflow to a black picture.
  if (!std::isfinite(o.lora_scale) || std::abs(o.lora_scale) > 100) {
    throw UsageError("--lora-scale: expected a number from -100 to 100, got " + util::format_number(o.lora_scale));
  }
  o.embeddings = args.option("--embeddings");
  o.compare_base = args.flag("--compare-base");
  if (o.compare_base && !o.lora) throw UsageError("--compare-base needs --lora FILE (base vs fine-tuned)");
  if (o.compare_base && args.option("--lora-mode") && *args.option("--lora-mode") == "merge") {
    throw UsageError("--compare-base keeps the adapters beside the weights (runtime); drop --lora-mode merge");
  }
  // Comparing toggles the adapters between scale 0 and the given scale, so they stay unmerged.
  const std::string mode = o.compare_base ? "runtime" : args.option_or("--lora-mode", "merge");
  if (mode != "merge" && mode != "runtime") {
    throw UsageError("--lora-mode: expected merge or runtime, got " + util::quoted(mode));
  }
  o.merge_lora = mode == "merge";
  if (!o.lora && (args.option("--lora-scale") || args.option("--lora-mode"))) {
    throw UsageError("--lora-scale and --lora-mode need --lora FILE");
  }
}

}  // namespace

Args parse_generate_args(const std::vector<std::string>& argv) {
  Args args(argv, {"--compare-base"},
            {"--model", "--out", "--negative", "--steps", "--guidance", "--seed", "--size", "--num-images",
             "--scheduler", "--vae", "--variant", "--revision", "--dtype", "--device", "--lora", "--lora-scale",
             "--lora-mode", "--batch-size", "--memory-budget", "--embeddings"},
            {"--prompt"});
  if (!args.positionals().empty()) throw UsageError("unexpected argument " + util::quoted(args.positionals()[0]));
  return args;
}

GenerateOptions generate_options(const Args& args) {
  GenerateOptions o;
  const auto model = args.option("--model");
  const auto out = args.option("--out");
  if (!model) throw UsageError("generate needs --model");
  if (!out) throw UsageError("generate needs --out DIR");
  o.out = *out;
  o.request = parse_request(args);
  o.auto_batch = args.option_or("--batch-size", "auto") == "auto";
  o.memory_budget_gib = args.float_option("--memory-budget").value_or(8.0);
  if (!(o.memory_budget_gib > 0)) {
    throw UsageError("--memory-budget: expected GiB > 0, got " + util::format_number(o.memory_budget_gib));
  }
  pipeline::validate(o.request);
  parse_lora(args, o);
  o.model.pretrained = *model;
  o.model.vae = args.option("--vae");
  o.model.variant = args.option("--variant");
  o.model.revision = args.option_or("--revision", "main");
  o.dtype = parse_dtype(args.option_or("--dtype", "fp32"));
  o.device = args.option_or("--device", "cpu");
  if (o.device != "cpu" && o.device != "cuda") {
    throw UsageError("--device: expected cpu or cuda, got " + util::quoted(o.device));
  }
  if (o.device == "cuda" && !torch::cuda::is_available()) {
    throw UsageError("--device cuda: this LibTorch has no CUDA or no GPU is visible");
  }
  // As train.mixed_precision: LibTorch's CPU kernels lack fp16 (LayerNorm, among others).
  if (o.device == "cpu" && o.dtype == torch::kHalf) {
    throw UsageError("--dtype fp16 needs --device cuda; on the CPU use bf16 or fp32");
  }
  return o;
}

}  // namespace sdxl::cli
