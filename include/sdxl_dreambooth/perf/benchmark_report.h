// What `bench` reports in both modes (training steps, generation): the set-up that was run,
// peak memory (RSS on the CPU, the CUDA caching allocator's max allocated on a GPU; max over
// ranks), throughput per rank and in total, analytic model FLOPs and MFU against the device's
// published peak. Printed as text or as one JSON object (--json).
#pragma once

#include "sdxl_dreambooth/config/run_config.h"
#include "sdxl_dreambooth/dist/collectives.h"

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace sdxl::perf {

struct BenchmarkOptions {
  std::int64_t steps = 10;                  // measured optimizer steps (train) or images per rank (generate)
  std::int64_t warmup = 2;                  // run first, not measured
  std::optional<std::string> architecture;  // networks from these configs with random weights
  std::optional<double> peak_tflops;        // the device's peak for MFU (default: util/device_peak)
  // Training: wait for the device at each phase boundary, so each phase's GPU time is its own.
  // Off, the device runs ahead of the host as in `train` and only whole steps are timed.
  bool phase_sync = true;
  // Training: profile the measured steps (perf/op_profile.h) and report the costliest ops.
  bool profile = false;
  std::size_t profile_top = 25;
};

struct BenchmarkSetup {
  // Where and with what it ran, for recording results (docs/benchmarks.md).
  std::string program;  // "sdxl-dreambooth 0.1.0 (commit abc123)"
  std::string torch_version;
  std::string host;
  std::string cpu;          // /proc/cpuinfo's model name
  std::string mode;         // "train" or "generate"
  std::string model;        // model.pretrained, or "random weights, architecture of DIR"
  std::string device;       // cpu, cuda:0, …
  std::string device_name;  // the GPU's name; empty on the CPU
  std::string precision;    // fp32, bf16, fp16
  std::string backend;      // collectives: mpi or nccl
  int world_size = 1;
  int threads = 1;  // intra-op threads
  std::string blas;  // LibTorch's CPU BLAS (util/blas_library.h): it sets the CPU figures
  std::int64_t resolution = 0;
  std::int64_t steps = 0, warmup = 0;
};

struct BenchmarkMemory {
  std::uint64_t peak_bytes = 0;  // max over ranks
  std::string kind;              // "RSS" or "CUDA max allocated"
};

struct BenchmarkThroughput {
  double images_per_s_per_rank = 0;  // mean over ranks
  double images_per_s_total = 0;
  double model_flops_per_image = 0;  // analytic UNet FLOPs (model/unet_flops.h)
  double tflops_per_rank = 0;        // achieved model TFLOP/s per rank
  std::optional<double> peak_tflops;
  std::optional<double> mfu;  // tflops_per_rank / peak_tflops
};

BenchmarkSetup benchmark_setup(const config::ModelConfig& model, const BenchmarkOptions& options, const std::string& mode,
                               const torch::Device& device, torch::Dtype dtype, const dist::Collectives& comm);

// Peak memory counts from here (the weights stay allocated, so they are in it).
void reset_peak_memory(const torch::Device& device);
// Every rank calls it.
BenchmarkMemory peak_memory(const torch::Device& device, dist::HostCollectives& comm);

// From this rank's rate; every rank calls it (the total is summed over the ranks).
BenchmarkThroughput throughput(double images_per_s, double model_flops_per_image, const BenchmarkSetup& setup,
                               dist::HostCollectives& comm, const std::optional<double>& peak_tflops);

// printf-style formatting of one number, and wall-clock seconds, for the reports.
std::string format_value(const char* format, double value);
double seconds_since(std::chrono::steady_clock::time_point start);

nlohmann::json to_json(const BenchmarkSetup& s);
nlohmann::json to_json(const BenchmarkThroughput& t, const BenchmarkMemory& m);
std::string describe(const BenchmarkSetup& s);
std::string describe(const BenchmarkThroughput& t, const BenchmarkMemory& m);

}  // namespace sdxl::perf
