// Loading speed of the safetensors reader against `cat FILE > /dev/null`.
//   bench_safetensors_load make FILE GiB   writes a test file of random fp16 tensors
//   bench_safetensors_load read FILE [--fresh]
//                                          copies every tensor into tensors allocated (and
//                                          touched) beforehand, as loading into a module's
//                                          existing parameters does, and prints the
//                                          throughput; --fresh clones into new memory instead
//                                          (then first-touch page faults dominate)
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
    const bool fresh = argc >= 4 && std::string(argv[3]) == "--fresh";
    auto file = io::SafetensorsFile::open(argv[2]);
    std::vector<torch::Tensor> dst;
    if (!fresh) {
      for (const auto& info : file->tensors()) dst.push_back(torch::zeros(info.shape, io::to_torch_dtype(info.dtype)));
    }
    const auto start = std::chrono::steady_clock::now();
    std::uint64_t bytes = 0;
    for (std::size_t i = 0; i < file->tensors().size(); ++i) {
      const auto& info = file->tensors()[i];
      const torch::Tensor view = io::tensor_view(file, info);
      if (fresh) {
        dst.push_back(view.clone());
      } else {
        dst[i].copy_(view);
      }
      bytes += info.end - info.begin;
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("%s: %.2f GiB in %.3f s = %.2f GiB/s (%s, %d thread(s))\n", argv[2], bytes / double(1ull << 30), s,
                bytes / double(1ull << 30) / s, fresh ? "into fresh memory" : "into allocated tensors",
                at::get_num_threads());
    return 0;
  }
  std::cerr << "usage: bench_safetensors_load make FILE GIB | read FILE [--fresh]\n";
  return 2;
}
