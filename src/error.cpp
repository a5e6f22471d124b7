#include "sdxl_dreambooth/error.h"

#include <cerrno>
#include <cstring>

namespace sdxl {

void throw_errno(const std::string& operation, const std::string& path) {
  const int err = errno;
  throw Error(operation + " '" + path + "' failed: " + std::strerror(err));
}

}  // namespace sdxl
