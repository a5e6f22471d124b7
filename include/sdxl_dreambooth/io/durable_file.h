// Making a finished file survive a crash or power loss: fsync its bytes, rename it over the
// final name, fsync the directory so the rename itself is on disk. Used for checkpoints
// (HDF5 never fsyncs, not even on close).
#pragma once

#include <string>

namespace sdxl::io {

// fsync of an existing file or directory; throws sdxl::Error naming it.
void fsync_path(const std::string& path, bool directory = false);

// fsync(tmp), rename(tmp, final_path), fsync(parent directory). After it returns, either
// the old `final_path` or the complete new one is on disk, never a partial file.
void commit_file(const std::string& tmp, const std::string& final_path);

}  // namespace sdxl::io
