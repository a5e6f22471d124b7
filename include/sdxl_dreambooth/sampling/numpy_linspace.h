// numpy.linspace as diffusers' schedulers call it, for timesteps and sigmas that round as theirs.
#pragma once

#include <cstdint>
#include <vector>

namespace sdxl::sampling {

// ref: numpy.linspace(start, stop, num): start + i * step with step = (stop - start) / (num - 1),
// the last value exactly stop. (i * step rounds differently from i / (num - 1).)
inline std::vector<double> np_linspace(double start, double stop, std::int64_t num) {
  if (num == 1) return {start};
  std::vector<double> out;
  const double step = (stop - start) / static_cast<double>(num - 1);
  for (std::int64_t i = 0; i < num; ++i) out.push_back(start + static_cast<double>(i) * step);
  out.back() = stop;
  return out;
}

}  // namespace sdxl::sampling
