#include "sdxl_dreambooth/util/stopwatch.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace sdxl::util {

std::string format_duration(double s) {
  const auto total = static_cast<long long>(std::llround(std::max(0.0, s)));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", total / 3600, total / 60 % 60, total % 60);
  return buf;
}

}  // namespace sdxl::util
