// `init-tiny`: the built-in tiny SDXL pipeline (no downloads) for the quickstart and tests.
#include "sdxl_dreambooth/cli/args.h"
#include "sdxl_dreambooth/cli/command.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/util/strings.h"
#include "sdxl_dreambooth/model/tiny_pipeline.h"

#include <iostream>

namespace sdxl::cli {

Command make_init_tiny_command() {
  Command c;
  c.name = "init-tiny";
  c.summary = "write a tiny random SDXL pipeline (diffusers layout, a few MB) to try everything without downloads";
  c.help =
      "usage: sdxl-dreambooth init-tiny --out DIR [--seed 0]\n\n"
      "Writes a complete SDXL pipeline folder (model_index.json, unet/, vae/, text_encoder/,\n"
      "text_encoder_2/, tokenizer/, tokenizer_2/, scheduler/) with the same block types and weight\n"
      "names as stable-diffusion-xl-base-1.0 at toy width, randomly initialised from --seed, and a\n"
      "byte-level CLIP tokenizer generated here (no merges, 514 tokens). It loads through the same\n"
      "code path as a real model: point model.pretrained at DIR. Its pictures are noise; it exists\n"
      "to exercise training, checkpoints and jobs end to end in seconds on a CPU.\n";
  c.run = [](const std::vector<std::string>& argv) {
    Args args(argv, {}, {"--out", "--seed"});
    if (!args.positionals().empty()) {
      throw UsageError("init-tiny takes no positional arguments, got " + util::quoted(args.positionals()[0]),
                       "give the folder with --out: sdxl-dreambooth init-tiny --out " + args.positionals()[0]);
    }
    const auto out = args.option("--out");
    if (!out) throw UsageError("init-tiny: --out DIR is required");
    const long long seed = args.int_option("--seed").value_or(0);
    if (seed < 0) throw UsageError("--seed: expected an integer >= 0, got " + std::to_string(seed));
    model::write_tiny_pipeline(*out, static_cast<std::uint64_t>(seed));
    std::cout << "wrote a tiny SDXL pipeline to " << *out << " (seed " << seed << ")\n";
    return 0;
  };
  return c;
}

}  // namespace sdxl::cli
