// This machine's name (gethostname), "unknown" when it cannot be read: for logs, checkpoint
// provenance and benchmark reports.
#pragma once

#include <string>

namespace sdxl::util {

std::string host_name();

}  // namespace sdxl::util
