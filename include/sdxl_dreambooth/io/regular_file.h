// Files of a dataset or a model are read only when they are regular files: opening a FIFO
// blocks until something writes to it (a run that neither ends nor answers a stop request),
// and a device is read without end.
#pragma once

#include <string>

namespace sdxl::io {

// Throws sdxl::Error naming `path` and what it is (a folder, a FIFO, a device, a socket) when
// it exists and is not a regular file (after following links). A missing path passes: the
// caller's own "not found" message is the better one.
void require_regular_file(const std::string& path);

// The same as a test: true for a regular file, false for anything else or nothing.
bool is_regular_file(const std::string& path);

}  // namespace sdxl::io
