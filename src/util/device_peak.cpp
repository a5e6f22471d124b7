#include "sdxl_dreambooth/util/device_peak.h"

namespace sdxl::util {
namespace {

struct Peak {
  const char* name_part;  // matched as a substring; more specific names first
  double bf16, fp32;
};

// SXM parts unless named otherwise.
constexpr Peak kPeaks[] = {
    {"H100 PCIe", 756.0, 51.2}, {"H100 NVL", 835.0, 60.0}, {"GH200", 989.4, 66.9}, {"H100", 989.4, 66.9},
    {"H200", 989.4, 66.9},      {"B200", 2250.0, 80.0},    {"A100", 312.0, 19.5},  {"L40S", 362.0, 91.6},
    {"A10G", 70.0, 31.2},       {"A10", 125.0, 31.2},      {"L4", 121.0, 30.3},    {"V100", 125.0, 15.7},
};

}  // namespace

std::optional<double> device_peak_tflops(const std::string& device_name, bool reduced_precision) {
  for (const Peak& p : kPeaks) {
    if (device_name.find(p.name_part) != std::string::npos) return reduced_precision ? p.bf16 : p.fp32;
  }
  return std::nullopt;
}

}  // namespace sdxl::util
