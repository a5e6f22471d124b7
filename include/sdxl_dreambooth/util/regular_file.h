// Files of a dataset or a model are read only when they are regular files: opening a FIFO
// blocks until something writes to it (a run that neither ends nor answers a stop request),
// and a device is read without end.
#pragma once

#include <cstdint>
#include <string>

namespace sdxl::util {

// Throws sdxl::Error naming `path` and what it is (a folder, a FIFO, a device, a socket) when
// it exists and is not a regular file (after following links). A missing path passes: the
// caller's own "not found" message is the better one.
void require_regular_file(const std::string& path);

// For a small file read whole (a config): why `path` cannot be read as one — not a regular
// file, or larger than `max_bytes` (a /dev/zero, a FIFO without a writer, a huge file) — or
// "" when it can (a missing file included: the caller's open says so).
std::string small_file_problem(const std::string& path, std::uintmax_t max_bytes);

// The same as a test: true for a regular file, false for anything else or nothing.
bool is_regular_file(const std::string& path);

}  // namespace sdxl::util
