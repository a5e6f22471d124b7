// One run per output folder. A FolderLock is an exclusive lock on a folder held for the life
// of the object: flock(2) on FOLDER/.sdxl-dreambooth.lock, which dies with the process, so a
// killed or requeued job never leaves a stale lock. The file names the holder (host, pid,
// Slurm job), so a second run fails at once naming it.
//
// Where flock is not available (NFS without lockd, Lustre mounted without -o flock: the call
// fails with ENOLCK, ENOSYS or EOPNOTSUPP) the lock is FOLDER/.sdxl-dreambooth.lock.held,
// created with O_EXCL and removed on release. Such a file left by a dead holder is stale, and
// taken over, when it names this Slurm job (a requeued job keeps its id) or a process of this
// host that no longer exists; otherwise the error says which file to remove once that holder
// is gone. SDXL_TEST_LOCK=exclusive-file forces this mode (tests).
#pragma once

#include <ctime>
#include <filesystem>
#include <string>

namespace sdxl::io {

class FolderLock {
 public:
  // Creates `folder` (and its parents) when missing and takes the lock. A UsageError naming
  // `key` (the config key or flag of the folder), the folder and the holder when another run
  // holds it; an Error when the folder cannot be created or the lock file written.
  FolderLock(const std::filesystem::path& folder, const std::string& key);
  ~FolderLock();
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;

  // After a usage error: removes what taking the lock created (the lock file, and the folders
  // when they were created for it and hold nothing else) and puts an earlier run's lock line
  // back, so a refused run leaves no trace.
  void abandon() noexcept;

  const std::filesystem::path& folder() const { return folder_; }

 private:
  void lock_with_flock();
  bool lock_with_exclusive_file();  // false when flock works here
  void take_exclusive_file();

  std::filesystem::path folder_;
  std::string key_;
  std::filesystem::path file_;
  std::filesystem::path first_created_;  // outermost folder created for the lock, if any
  std::string previous_holder_;          // an existing flock file's line, restored by abandon()
  struct timespec previous_times_[2] = {};  // ... and its access and modification times
  bool have_previous_times_ = false;
  int fd_ = -1;
  bool created_file_ = false;
  bool exclusive_file_ = false;  // the O_EXCL fallback (file removed on release)
};

// "host=H pid=P job=J" of this process, as a lock file records it.
std::string lock_holder_line();

}  // namespace sdxl::io
