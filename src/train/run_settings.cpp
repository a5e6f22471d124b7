#include "sdxl_dreambooth/train/run_settings.h"

#include "sdxl_dreambooth/train/training_setup.h"

#include <random>

namespace sdxl::train {

RunSettings resolve_settings(const config::RunConfig& cfg, int local_rank) {
  RunSettings s;
  s.device = training_device(cfg.train, local_rank);
  configure_cuda_math(cfg.train);
  s.mixed_precision = cfg.train.mixed_precision;
  s.dtype = training_dtype(cfg.train, s.device);
  s.cuda_graphs = cuda_graphs(cfg.train, cfg.lora, s.device);
  if (cfg.train.seed) {
    s.seed = static_cast<std::uint64_t>(*cfg.train.seed);
  } else {
    s.seed = std::random_device{}() & 0xffffffffu;
  }
  s.prior = cfg.prior.enabled;
  s.class_image_dtype = cfg.prior.generation_precision
                            ? precision_dtype(*cfg.prior.generation_precision, s.device, "prior.generation_precision")
                            : s.dtype;
  s.resolution = static_cast<int>(cfg.data.resolution);
  s.output = cfg.output.dir;
  s.checkpoint_dir = cfg.checkpoint.dir.value_or((s.output / "checkpoints").string());
  s.checkpoint_every = cfg.checkpoint.every_steps;
  s.keep_last = cfg.checkpoint.keep_last.value_or(0);
  return s;
}

}  // namespace sdxl::train
