#include "sdxl_dreambooth/io/durable_file.h"

#include "sdxl_dreambooth/error.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

namespace sdxl::io {

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0));
  if (fd < 0) throw_errno("open for fsync", path);
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    errno = err;
    throw_errno("fsync", path);
  }
  if (::close(fd) != 0) throw_errno("close", path);
}

void commit_file(const std::string& tmp, const std::string& final_path) {
  fsync_path(tmp);
  if (std::rename(tmp.c_str(), final_path.c_str()) != 0) throw_errno("rename to " + final_path + " from", tmp);
  std::string dir = std::filesystem::path(final_path).parent_path().string();
  fsync_path(dir.empty() ? "." : dir, true);
}

}  // namespace sdxl::io
