#include "sdxl_dreambooth/dist/collective_log.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/util/strings.h"

#include <algorithm>
#include <cctype>

namespace sdxl::dist {

std::string dtype_name(c10::ScalarType type) {
  switch (type) {
    case c10::ScalarType::Float: return "float32";
    case c10::ScalarType::Double: return "float64";
    case c10::ScalarType::Half: return "float16";
    case c10::ScalarType::BFloat16: return "bfloat16";
    case c10::ScalarType::Long: return "int64";
    case c10::ScalarType::Int: return "int32";
    case c10::ScalarType::Byte: return "uint8";
    default: return c10::toString(type);
  }
}

DistributedDebug parse_distributed_debug(const char* value) {
  if (!value) return DistributedDebug::kOff;
  const std::string v = util::to_lower(value);
  if (v.empty() || v == "off") return DistributedDebug::kOff;
  if (v == "detail") return DistributedDebug::kDetail;
  throw UsageError("SDXL_DISTRIBUTED_DEBUG=" + util::quoted(value) + ": expected off or detail",
                   "detail logs every collective of every rank; unset the variable for none");
}

void CollectiveLog::record(const CollectiveCall& call) {
  ++calls_;
  if (!sink_) return;
  std::string line = "collective " + std::to_string(calls_);
  if (call.context && !call.context->empty()) line += " at " + *call.context;
  line += ": " + std::string(call.what) + ": " + call.op + " via " + call.route + ", " + call.dtype + " x " +
          std::to_string(call.count) + " on " + call.device;
  sink_(line);
}

}  // namespace sdxl::dist
