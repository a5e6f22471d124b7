// Loading speed of the safetensors reader against `cat FILE > /dev/null`.
//   bench_safetensors_load make FILE GiB   writes a test file of random fp16 tensors
//   bench_safetensors_load read FILE       materializes every tensor (a copy into fresh
//                                          memory, as loading into a module does) and
//                                          prints the throughput
#include "sdxl_dreambooth/io/safetensors_torch.h"

#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>

using namespace sdxl;

int main(int argc, char** argv) {
  if (argc >= 4 && std::string(argv[1]) == "make") {
    const double gib = std::stod(argv[3]);
    const std::int64_t per = 64ll << 20;  // 64 Mi fp16 elements = 128 MiB per tensor
    std::vector<std::pair<std::string, torch::Tensor>> tensors;
    const auto count = static_cast<int>(gib * 8);
    for (int i = 0; i < count; ++i) {
      tensors.emplace_back("t" + std::to_string(i), torch::randn({per}).to(torch::kHalf));
    }
    io::write_safetensors(argv[2], tensors);
    return 0;
  }
  if (argc >= 3 && std::string(argv[1]) == "read") {
    const auto start = std::chrono::steady_clock::now();
    auto file = io::SafetensorsFile::open(argv[2]);
    std::uint64_t bytes = 0;
    double checksum = 0;
    for (const auto& info : file->tensors()) {
      torch::Tensor t = io::tensor_view(file, info).clone();  // materialize: page in + copy
      bytes += info.end - info.begin;
      checksum += t.numel() ? t[0].item<double>() : 0.0;
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("%s: %.2f GiB in %.3f s = %.2f GiB/s (checksum %g)\n", argv[2], bytes / double(1ull << 30), s,
                bytes / double(1ull << 30) / s, checksum);
    return 0;
  }
  std::cerr << "usage: bench_safetensors_load make FILE GIB | read FILE\n";
  return 2;
}
