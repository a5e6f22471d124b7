#include "sdxl_dreambooth/perf/benchmark_report.h"

#include "sdxl_dreambooth/build_features.h"
#include "sdxl_dreambooth/torch_compat.h"
#include "sdxl_dreambooth/util/device_peak.h"
#include "sdxl_dreambooth/util/memory_usage.h"
#include "sdxl_dreambooth/util/host_name.h"
#include "sdxl_dreambooth/util/strings.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>

namespace sdxl::perf {
namespace {

std::string precision_name(torch::Dtype dtype) {
  if (dtype == torch::kBFloat16) return "bf16";
  if (dtype == torch::kHalf) return "fp16";
  return "fp32";
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  }
  return "unknown";
}

template <typename T>
nlohmann::json optional_json(const std::optional<T>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

}  // namespace

std::string format_value(const char* format, double value) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, value);
  return buf;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

BenchmarkSetup benchmark_setup(const config::ModelConfig& model, const BenchmarkOptions& o, const std::string& mode,
                               const torch::Device& device, torch::Dtype dtype, const dist::Collectives& comm) {
  BenchmarkSetup s;
  const BuildFeatures f = build_features();
  s.program = "sdxl-dreambooth " + f.program_version + " (commit " + f.git_commit + ")";
  s.torch_version = f.torch_version;
  s.host = util::host_name();
  s.cpu = cpu_model();
  s.mode = mode;
  s.model = o.architecture ? "random weights, architecture of " + *o.architecture : model.pretrained;
  s.device = device.str();
  if (device.is_cuda()) s.device_name = compat::cuda_device_name(device.index());
  s.precision = precision_name(dtype);
  s.backend = comm.backend();
  s.world_size = comm.world_size();
  s.threads = at::get_num_threads();
  s.blas = f.blas;
  s.steps = o.steps;
  s.warmup = o.warmup;
  return s;
}

void reset_peak_memory(const torch::Device& device) {
  if (device.is_cuda()) {
    compat::cuda_reset_peak_allocated(device.index());
  } else {
    util::reset_peak_rss();
  }
}

BenchmarkMemory peak_memory(const torch::Device& device, dist::HostCollectives& comm) {
  BenchmarkMemory m;
  std::uint64_t bytes = util::peak_rss_bytes();
  m.kind = "RSS";
  if (device.is_cuda()) {
    if (auto b = compat::cuda_peak_allocated_bytes(device.index())) {
      bytes = *b;
      m.kind = "CUDA max allocated";
    }
  }
  // Below 2^53 bytes a double is exact.
  m.peak_bytes = static_cast<std::uint64_t>(comm.all_reduce_max(static_cast<double>(bytes), "benchmark peak memory"));
  return m;
}

BenchmarkThroughput throughput(double images_per_s, double model_flops_per_image, const BenchmarkSetup& setup,
                               dist::HostCollectives& comm, const std::optional<double>& peak_tflops) {
  BenchmarkThroughput t;
  t.images_per_s_total = comm.all_reduce_sum(images_per_s, "benchmark throughput");
  t.images_per_s_per_rank = t.images_per_s_total / setup.world_size;
  t.model_flops_per_image = model_flops_per_image;
  t.tflops_per_rank = t.images_per_s_per_rank * model_flops_per_image / 1e12;
  t.peak_tflops = peak_tflops;
  if (!t.peak_tflops && !setup.device_name.empty()) {
    t.peak_tflops = util::device_peak_tflops(setup.device_name, setup.precision != "fp32");
  }
  if (t.peak_tflops && *t.peak_tflops > 0) t.mfu = t.tflops_per_rank / *t.peak_tflops;
  return t;
}

nlohmann::json to_json(const BenchmarkSetup& s) {
  return {{"program", s.program},
          {"torch_version", s.torch_version},
          {"host", s.host},
          {"cpu", s.cpu},
          {"mode", s.mode},
          {"model", s.model},
          {"device", s.device},
          {"device_name", s.device_name},
          {"precision", s.precision},
          {"backend", s.backend},
          {"world_size", s.world_size},
          {"threads", s.threads},
          {"blas", s.blas},
          {"resolution", s.resolution},
          {"steps", s.steps},
          {"warmup", s.warmup}};
}

nlohmann::json to_json(const BenchmarkThroughput& t, const BenchmarkMemory& m) {
  return {{"images_per_s_per_rank", t.images_per_s_per_rank},
          {"images_per_s_total", t.images_per_s_total},
          {"model_flops_per_image", t.model_flops_per_image},
          {"achieved_tflops_per_rank", t.tflops_per_rank},
          {"peak_tflops", optional_json(t.peak_tflops)},
          {"mfu", optional_json(t.mfu)},
          {"peak_memory_bytes", m.peak_bytes},
          {"peak_memory_kind", m.kind}};
}

std::string describe(const BenchmarkSetup& s) {
  return "program    " + s.program + ", LibTorch " + s.torch_version + "\n" + "host       " + s.host + " (" + s.cpu +
         ")\n" + "model      " + s.model + "\n" + "device     " + s.device +
         (s.device_name.empty() ? "" : " (" + s.device_name + ")") + ", " + s.precision + ", " +
         std::to_string(s.threads) + " intra-op thread(s)\n" + "blas       " + s.blas + "\n" + "ranks      " +
         std::to_string(s.world_size) + " (" + s.backend + " collectives)\n";
}

std::string describe(const BenchmarkThroughput& t, const BenchmarkMemory& m) {
  std::string out = "throughput " + format_value("%.4g", t.images_per_s_per_rank) + " img/s per rank, " +
                    format_value("%.4g", t.images_per_s_total) + " img/s total\n";
  out += "flops      " + format_value("%.4g", t.model_flops_per_image / 1e9) + " GFLOP per image, " +
         format_value("%.4g", t.tflops_per_rank * 1e3) + " GFLOP/s per rank";
  if (t.mfu) {
    out += ", MFU " + format_value("%.1f", *t.mfu * 100) + " % of " + format_value("%.4g", *t.peak_tflops) + " TFLOP/s";
  } else {
    out += " (MFU: no known peak for this device; --peak-tflops sets one)";
  }
  out += "\nmemory     peak " + util::format_bytes(static_cast<double>(m.peak_bytes)) + " " + m.kind +
         " (max over ranks)\n";
  return out;
}

}  // namespace sdxl::perf
