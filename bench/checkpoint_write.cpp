// Time and size of writing (durably) and reading a training checkpoint with SDXL's real LoRA
// shapes: the 560 attention projections listed in the reference manifest's
// unet_lora_targets.tsv, adapters of rank R with both AdamW moments (random values: moments
// compress about as badly), plus metrics for the given number of steps.
//   bench_checkpoint_write TARGETS.tsv DIR [--rank 4] [--writes 3] [--steps 1000]
#include "sdxl_dreambooth/train/checkpoint_file.h"
#include "sdxl_dreambooth/util/strings.h"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

using namespace sdxl;
namespace fs = std::filesystem;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: bench_checkpoint_write TARGETS.tsv DIR [--rank 4] [--writes 3] [--steps 1000]\n");
    return 2;
  }
  std::int64_t rank = 4, writes = 3, steps = 1000;
  for (int i = 3; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--rank")) rank = std::stoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--writes")) writes = std::stoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--steps")) steps = std::stoll(argv[i + 1]);
  }
  try {
    train::Checkpoint c;
    c.state.step = steps;
    c.config_toml = "# bench_checkpoint_write\n";
    train::ModelAdapters a;
    a.model = "unet";
    a.rank = rank;
    a.alpha = static_cast<double>(rank);
    a.targets = {"to_q", "to_k", "to_v", "to_out.0"};
    std::ifstream in(argv[1]);
    if (!in) throw std::runtime_error(std::string("cannot read ") + argv[1]);
    std::string line;
    torch::manual_seed(0);
    while (std::getline(in, line)) {
      if (line.empty() || line[0] == '#') continue;
      std::istringstream fields(line);
      std::string name, shape;
      fields >> name >> shape;
      const auto x = shape.find('x');
      const std::int64_t out = std::stoll(shape.substr(0, x)), in_features = std::stoll(shape.substr(x + 1));
      const std::string module = name.substr(0, name.size() - std::strlen(".weight"));
      for (const char* half : {"lora_A", "lora_B"}) {
        train::AdapterParam p;
        p.module = module;
        p.half = half;
        p.weight = std::string(half) == "lora_A" ? torch::randn({rank, in_features}) : torch::randn({out, rank});
        p.state["exp_avg"] = torch::randn_like(p.weight);
        p.state["exp_avg_sq"] = torch::rand_like(p.weight);
        a.params.push_back(p);
      }
    }
    c.adapters.push_back(std::move(a));
    for (std::int64_t s = 1; s <= steps; ++s) c.metrics.push_back({s, 0.1, 1e-4, 0.5, 1.0});
    std::printf("%zu adapter matrices, %lld LoRA parameters (rank %lld), %lld metric rows\n",
                c.adapters[0].params.size(), static_cast<long long>(c.lora_parameter_count()),
                static_cast<long long>(rank), static_cast<long long>(steps));
    fs::path last;
    for (std::int64_t w = 0; w < writes; ++w) {
      c.state.step = steps + w;
      const double t0 = now();
      last = train::save_checkpoint(argv[2], c);
      const double t1 = now();
      std::printf("write %lld: %s in %.3f s (durable: tmp, fsync, rename, dir fsync)\n", static_cast<long long>(w + 1),
                  util::format_bytes(static_cast<double>(fs::file_size(last))).c_str(), t1 - t0);
    }
    const double t2 = now();
    const train::Checkpoint back = train::read_checkpoint_file(last.string());
    std::printf("read back (weights, moments, metrics) in %.3f s: %lld parameters\n", now() - t2,
                static_cast<long long>(back.lora_parameter_count()));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
