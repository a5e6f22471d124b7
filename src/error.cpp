#include "sdxl_dreambooth/error.h"

#include <cerrno>
#include <cstring>

namespace sdxl {

void throw_errno(const std::string& operation, const std::string& path) {
  const int err = errno;
  throw Error(operation + " '" + path + "' failed: " + std::strerror(err));
}

std::string message_without_backtrace(const std::exception& e) {
  const std::string what = e.what();
  return what.substr(0, what.find("\nException raised from"));
}

}  // namespace sdxl
