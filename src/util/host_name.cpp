#include "sdxl_dreambooth/util/host_name.h"

#include <unistd.h>

namespace sdxl::util {

std::string host_name() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

}  // namespace sdxl::util
