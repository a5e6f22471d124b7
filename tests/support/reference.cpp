#include "support/reference.h"

#include <cstdlib>

namespace sdxl::test {

std::filesystem::path project_dir() { return SDXL_SOURCE_DIR; }

std::filesystem::path reference_dir() {
  if (const char* env = std::getenv("SDXL_REFERENCE_DIR"); env && *env) return env;
  return project_dir() / ".." / "shared" / "reference";
}

std::filesystem::path subjects_dir() { return reference_dir() / ".." / "subjects"; }

bool reference_available() {
  const auto dir = reference_dir();
  return std::filesystem::is_regular_file(dir / "README.md") && std::filesystem::is_directory(dir / "tiny-sdxl");
}

bool reference_required() {
  const char* env = std::getenv("SDXL_REFERENCE_REQUIRED");
  return env && std::string(env) == "1";
}

std::string reference_missing_reason() {
  return "reference data not found at " + reference_dir().string() +
         " (set SDXL_REFERENCE_DIR; parity tests need it" +
         (reference_required() ? ", and SDXL_REFERENCE_REQUIRED=1 makes its absence a failure)" : ")");
}

}  // namespace sdxl::test
