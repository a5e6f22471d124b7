#include "sdxl_dreambooth/cli/status_file.h"

#include "sdxl_dreambooth/error.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <unistd.h>

namespace sdxl::cli {

bool first_rank_of_launch(const std::function<const char*(const char*)>& getenv) {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"}) {
    const char* v = getenv(name);
    if (v == nullptr || *v == '\0') continue;
    return std::string(v) == "0";
  }
  return true;
}

std::optional<StatusFile> StatusFile::from_environment() {
  const char* path = std::getenv("SDXL_STATUS_FILE");
  if (path == nullptr || *path == '\0') return std::nullopt;
  if (!first_rank_of_launch([](const char* n) { return std::getenv(n); })) return std::nullopt;
  return StatusFile(path);
}

void StatusFile::write(const std::string& text) const {
  // A reader sees the old content or the new, never a part: write aside, then rename.
  const std::string tmp = path_ + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text << "\n";
    out.close();
    if (!out) {
      const std::string why = std::strerror(errno);
      std::remove(tmp.c_str());
      throw Error("SDXL_STATUS_FILE: cannot write " + tmp + ": " + why);
    }
  }
  if (std::rename(tmp.c_str(), path_.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    throw Error("SDXL_STATUS_FILE: cannot rename " + tmp + " to " + path_ + ": " + why);
  }
}

void StatusFile::started(const std::string& command) const { write("started " + command); }

void StatusFile::finished(int exit_code) const noexcept {
  try {
    write("exit " + std::to_string(exit_code));
  } catch (const std::exception& e) {
    std::cerr << "warning: " << e.what() << "\n";
  }
}

}  // namespace sdxl::cli
