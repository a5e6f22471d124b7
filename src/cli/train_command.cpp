// `train`: a DreamBooth LoRA training run from a TOML config (single process for now).
#include "sdxl_dreambooth/cli/args.h"
#include "sdxl_dreambooth/cli/command.h"
#include "sdxl_dreambooth/config/config.h"
#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/train/trainer.h"
#include "sdxl_dreambooth/util/logger.h"

#include <iostream>

namespace sdxl::cli {

Command make_train_command() {
  Command c;
  c.name = "train";
  c.summary = "DreamBooth LoRA fine-tuning of SDXL from a TOML config";
  c.help =
      "usage: sdxl-dreambooth train CONFIG.toml [--set section.key=value]...\n\n"
      "Validates the config (as check-config does), loads the base pipeline, generates missing\n"
      "class images when prior preservation is on, encodes every training image and prompt once,\n"
      "trains LoRA adapters on the UNet's attention projections and writes\n"
      "OUTPUT/pytorch_lora_weights.safetensors (diffusers format), validation images under\n"
      "OUTPUT/samples/step_N/ and the effective config as OUTPUT/train_config.toml.\n"
      "Logs step, loss, learning rate, gradient norm, images/s and ETA every\n"
      "logging.every_steps steps, and a time split and peak memory at the end.\n\n"
      "keys:\n" + config::config_help_text();
  c.run = [](const std::vector<std::string>& argv) {
    Args args(argv, {}, {}, {"--set"});
    if (args.positionals().size() != 1) {
      throw UsageError("train takes exactly one CONFIG.toml, got " + std::to_string(args.positionals().size()) +
                       " arguments");
    }
    const config::Config cfg = config::load_config_file(args.positionals()[0], args.repeated("--set"));
    const Logger log(std::cerr, parse_log_level(cfg.get_string("logging.level")));
    train::run_training(cfg, log);
    return 0;
  };
  return c;
}

}  // namespace sdxl::cli
