// SDXL_DISTRIBUTED_DEBUG=detail (modelled on PyTorch's TORCH_DISTRIBUTED_DEBUG): every rank
// logs each collective it issues with its name, route (mpi or nccl), operation, dtype, device,
// element count and where in the run it happens, so a user can see what a job does and where
// two ranks part ways.
#pragma once

#include <c10/core/ScalarType.h>

#include <cstdint>
#include <functional>
#include <string>

namespace sdxl::dist {

enum class DistributedDebug { kOff, kDetail };

// PyTorch's names: "float32", "bfloat16", "int64", "uint8", ...
std::string dtype_name(c10::ScalarType type);

// The value of SDXL_DISTRIBUTED_DEBUG: unset, empty or "off" is kOff, "detail" kDetail (any
// case); anything else is a UsageError naming the variable, the value and the choices.
DistributedDebug parse_distributed_debug(const char* value);

struct CollectiveCall {
  const char* route = "";      // "mpi", "nccl", "mpi via host" (a GPU tensor staged through host memory)
  const char* op = "";         // "all-reduce sum", "broadcast from 0", ...
  const char* what = "";       // "all-reduce of LoRA gradients"
  const std::string* context = nullptr;  // "step 12"
  std::string dtype;           // "float32", "bytes", ...
  std::string device;          // "cpu", "cuda:1"
  std::int64_t count = 0;      // elements
};

// Where the lines go; a default-constructed log is off and costs one branch per collective.
class CollectiveLog {
 public:
  using Sink = std::function<void(const std::string& line)>;
  CollectiveLog() = default;
  explicit CollectiveLog(Sink sink) : sink_(std::move(sink)) {}

  bool enabled() const { return static_cast<bool>(sink_); }
  // "collective 17 at step 3: all-reduce of LoRA gradients: all-reduce sum via nccl, float32 × 2,991,361 on cuda:0"
  void record(const CollectiveCall& call);
  std::uint64_t calls() const { return calls_; }

 private:
  Sink sink_;
  std::uint64_t calls_ = 0;
};

}  // namespace sdxl::dist
