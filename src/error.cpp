#include "sdxl_dreambooth/error.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>

namespace sdxl {

void throw_errno(const std::string& operation, const std::string& path) {
  const int err = errno;
  throw Error(operation + " '" + path + "' failed: " + std::strerror(err));
}

std::string message_without_backtrace(const std::exception& e) {
  // LibTorch appends its C++ stack either as "Exception raised from ..." or, for a failed
  // enforce (an allocation, among others), as "frame #0: ..." lines.
  const std::string what = e.what();
  return what.substr(0, std::min(what.find("\nException raised from"), what.find("\nframe #")));
}

bool is_out_of_memory(const std::exception& e) {
  if (dynamic_cast<const std::bad_alloc*>(&e)) return true;
  const std::string what = e.what();
  return what.find("can't allocate memory") != std::string::npos ||
         what.find("CUDA out of memory") != std::string::npos;
}

}  // namespace sdxl
