// Test helper for CheckpointDurability: writes checkpoint-<step>.h5 into DIR for step = START,
// START+1, ... forever (keeping the newest 2), each with weights filled with the step number
// and enough data (about 12 MB, 0.2-0.4 s per write) that a SIGKILL often lands inside one. Prints one line at
// start and one per committed checkpoint.
#include "sdxl_dreambooth/train/checkpoint_dir.h"
#include "sdxl_dreambooth/train/checkpoint_file.h"

#include <cstdio>
#include <cstdlib>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: checkpoint_writer DIR START\n");
    return 2;
  }
  using namespace sdxl::train;
  std::printf("started\n");
  std::fflush(stdout);
  for (std::int64_t step = std::atoll(argv[2]);; ++step) {
    Checkpoint c;
    c.state.step = step;
    c.config_toml = "# durability test\n";
    ModelAdapters a;
    a.model = "unet";
    a.rank = 64;
    a.alpha = 64;
    a.targets = {"to_q"};
    for (int m = 0; m < 4; ++m) {
      for (const char* half : {"lora_A", "lora_B"}) {
        AdapterParam p;
        p.module = "block." + std::to_string(m) + ".to_q";
        p.half = half;
        p.weight = std::string(half) == "lora_A" ? torch::full({64, 2048}, static_cast<float>(step))
                                                 : torch::full({2048, 64}, static_cast<float>(step));
        p.state["exp_avg"] = torch::rand_like(p.weight);  // incompressible, so the write takes a while
        p.state["exp_avg_sq"] = torch::rand_like(p.weight);
        a.params.push_back(p);
      }
    }
    c.adapters.push_back(std::move(a));
    save_checkpoint(argv[1], c);
    prune_checkpoints(argv[1], 2);
    std::printf("committed %lld\n", static_cast<long long>(step));
    std::fflush(stdout);
  }
}
