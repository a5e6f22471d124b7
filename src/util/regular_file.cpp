#include "sdxl_dreambooth/util/regular_file.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/util/strings.h"

#include <sys/stat.h>

namespace sdxl::util {

void require_regular_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || S_ISREG(st.st_mode)) return;
  const char* kind = S_ISDIR(st.st_mode)                          ? "a folder"
                     : S_ISFIFO(st.st_mode)                       ? "a FIFO (named pipe)"
                     : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device"
                     : S_ISSOCK(st.st_mode)                       ? "a socket"
                                                                  : "something other than a file";
  throw Error(util::quoted(path) + " is " + kind + ", not a regular file",
              "give a file: a pipe would block the run until something writes to it, a device never ends");
}

std::string small_file_problem(const std::string& path, std::uintmax_t max_bytes) {
  try {
    require_regular_file(path);
  } catch (const Error& e) {
    return e.what();
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && static_cast<std::uintmax_t>(st.st_size) > max_bytes) {
    return util::quoted(path) + " is " + std::to_string(st.st_size) + " bytes; expected at most " +
           std::to_string(max_bytes);
  }
  return "";
}

bool is_regular_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace sdxl::util
