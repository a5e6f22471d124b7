#include "sdxl_dreambooth/io/folder_lock.h"

#include "sdxl_dreambooth/error.h"
#include "sdxl_dreambooth/util/host_name.h"
#include "sdxl_dreambooth/util/strings.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <sstream>

namespace fs = std::filesystem;

namespace sdxl::io {
namespace {

constexpr char kLockName[] = ".sdxl-dreambooth.lock";
constexpr char kHeldName[] = ".sdxl-dreambooth.lock.held";

struct Holder {
  std::string host;
  long pid = 0;
  std::string job;
};

Holder parse_holder(const std::string& line) {
  Holder h;
  std::istringstream in(line);
  std::string token;
  while (in >> token) {
    const auto eq = token.find('=');
    if (eq == std::string::npos) continue;
    const std::string key = token.substr(0, eq), value = token.substr(eq + 1);
    if (key == "host") h.host = value;
    if (key == "pid") h.pid = std::strtol(value.c_str(), nullptr, 10);
    if (key == "job" && value != "-") h.job = value;
  }
  return h;
}

std::string describe(const Holder& h) {
  if (h.host.empty()) return "holder unknown";
  return "host " + h.host + ", pid " + std::to_string(h.pid) + (h.job.empty() ? "" : ", Slurm job " + h.job);
}

std::string read_holder(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return {};
  char buf[512];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

// Creates `folder` when missing; returns the outermost folder it created (empty if none).
fs::path create_folder(const fs::path& folder, const std::string& key) {
  std::error_code ec;
  fs::path outermost;
  for (fs::path p = folder; !p.empty() && !fs::exists(p, ec); p = p.parent_path()) {
    outermost = p;
    if (p == p.parent_path()) break;
  }
  fs::create_directories(folder, ec);
  if (ec) throw UsageError(key + ": cannot create " + util::quoted(folder.string()) + ": " + ec.message());
  if (!fs::is_directory(folder, ec)) throw UsageError(key + ": " + util::quoted(folder.string()) + " is not a folder");
  return outermost;
}

// flock is not implemented on this filesystem (NFS without lockd, Lustre without -o flock).
bool flock_unsupported(int err) { return err == ENOLCK || err == ENOSYS || err == EOPNOTSUPP || err == EINVAL; }

// An O_EXCL lock file whose holder cannot be running any more.
bool stale(const Holder& h) {
  const char* job = std::getenv("SLURM_JOB_ID");
  if (job && *job && h.job == job) return true;  // this job, requeued
  if (h.host == util::host_name() && h.pid > 0 && ::kill(static_cast<pid_t>(h.pid), 0) != 0 && errno == ESRCH) {
    return true;
  }
  return false;
}

void write_holder(int fd, const fs::path& path) {
  const std::string line = lock_holder_line();
  if (::ftruncate(fd, 0) != 0) throw_errno("truncate the lock file", path.string());
  if (::pwrite(fd, line.data(), line.size(), 0) != static_cast<ssize_t>(line.size())) {
    throw_errno("write the lock file", path.string());
  }
}

}  // namespace

std::string lock_holder_line() {
  const char* job = std::getenv("SLURM_JOB_ID");
  return "host=" + util::host_name() + " pid=" + std::to_string(::getpid()) +
         " job=" + (job && *job ? std::string(job) : std::string("-")) + "\n";
}

FolderLock::FolderLock(const fs::path& folder, const std::string& key) : folder_(folder), key_(key) {
  first_created_ = create_folder(folder_, key_);
  const char* mode = std::getenv("SDXL_TEST_LOCK");
  if (mode && std::string(mode) == "exclusive-file") {
    take_exclusive_file();
  } else {
    lock_with_flock();
  }
}

FolderLock::~FolderLock() {
  if (fd_ < 0) return;
  // A flock file stays: removing it would let a second run lock a new file while a third
  // still holds the old one.
  if (exclusive_file_) ::unlink(file_.c_str());
  ::close(fd_);
}

void FolderLock::lock_with_flock() {
  file_ = folder_ / kLockName;
  std::error_code ec;
  created_file_ = !fs::exists(file_, ec);
  // Non-blocking: a FIFO of that name would otherwise hold the run in open() for good.
  fd_ = ::open(file_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0644);
  if (fd_ < 0) throw_errno("create the lock file of " + key_, file_.string());
  struct stat kind {};
  if (::fstat(fd_, &kind) != 0 || !S_ISREG(kind.st_mode)) {
    ::close(fd_);
    fd_ = -1;
    throw UsageError(key_ + ": the lock file " + util::quoted(file_.string()) + " is not a regular file",
                     "remove it; the run creates its own");
  }
  if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) {
    previous_holder_ = read_holder(file_);  // put back if this run is refused (abandon)
    struct stat st {};
    if (!created_file_ && ::fstat(fd_, &st) == 0) {
      previous_times_[0] = st.st_atim;
      previous_times_[1] = st.st_mtim;
      have_previous_times_ = true;
    }
    write_holder(fd_, file_);
    return;
  }
  const int err = errno;
  const std::string holder = read_holder(file_);
  ::close(fd_);
  fd_ = -1;
  if (flock_unsupported(err)) {
    if (created_file_) ::unlink(file_.c_str());
    created_file_ = false;
    take_exclusive_file();
    return;
  }
  if (err == EWOULDBLOCK) {
    throw UsageError(key_ + ": " + util::quoted(folder_.string()) + " is in use by another run (" +
                         describe(parse_holder(holder)) + ", lock " + file_.string() + ")",
                     "wait for that run to end, or give this one another " + key_);
  }
  errno = err;
  throw_errno("lock", file_.string());
}

void FolderLock::take_exclusive_file() {
  exclusive_file_ = true;
  file_ = folder_ / kHeldName;
  for (int attempt = 0; attempt < 2; ++attempt) {
    fd_ = ::open(file_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ >= 0) {
      created_file_ = true;
      write_holder(fd_, file_);
      if (::fsync(fd_) != 0) throw_errno("sync the lock file", file_.string());
      return;
    }
    if (errno != EEXIST) throw_errno("create the lock file of " + key_, file_.string());
    const Holder h = parse_holder(read_holder(file_));
    if (!stale(h)) {
      throw UsageError(key_ + ": " + util::quoted(folder_.string()) + " is in use by another run (" + describe(h) +
                           ", lock " + file_.string() + "; this filesystem has no flock)",
                       "wait for that run to end, or give this one another " + key_ + "; if that run is gone (its "
                       "node failed), remove " + file_.string());
    }
    if (::unlink(file_.c_str()) != 0 && errno != ENOENT) throw_errno("remove the stale lock file", file_.string());
  }
  throw UsageError(key_ + ": " + util::quoted(folder_.string()) + " is being locked by another run at the same time",
                   "start one run per " + key_);
}

void FolderLock::abandon() noexcept {
  if (fd_ >= 0) {
    if (created_file_ || exclusive_file_) {
      ::unlink(file_.c_str());
    } else if (::ftruncate(fd_, 0) == 0) {
      // The flock file of an earlier run: its line as it was.
      [[maybe_unused]] const ssize_t n = ::pwrite(fd_, previous_holder_.data(), previous_holder_.size(), 0);
      // ... and its times, so a refused run leaves the folder as it found it.
      if (have_previous_times_) ::futimens(fd_, previous_times_);
    }
    ::close(fd_);
    fd_ = -1;
  }
  if (first_created_.empty()) return;
  std::error_code ec;
  for (fs::path p = folder_;; p = p.parent_path()) {
    if (!fs::remove(p, ec)) break;  // not empty (or gone): stop
    if (p == first_created_ || p == p.parent_path()) break;
  }
}

}  // namespace sdxl::io
