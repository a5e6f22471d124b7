#include "sdxl_dreambooth/dist/fallback_exit.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <thread>

namespace sdxl::dist {

void arm_fallback_exit(double seconds, int code) {
  const auto delay = std::chrono::duration<double>(std::max(0.0, seconds));
  try {
    std::thread([delay, code] {
      std::this_thread::sleep_for(delay);
      std::fprintf(stderr, "error: the abort did not finish within %.0f s; exiting now\n", delay.count());
      std::fflush(stderr);
      std::_Exit(code);
    }).detach();
  } catch (const std::exception&) {
    alarm(static_cast<unsigned>(std::ceil(std::max(1.0, seconds))));
  }
}

}  // namespace sdxl::dist
