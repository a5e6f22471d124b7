// Locates the reference data (../shared/reference) for parity tests.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

namespace sdxl::test {

// SDXL_REFERENCE_DIR, or ../shared/reference relative to the project root.
std::filesystem::path reference_dir();
// The folder exists and holds the README and tiny-sdxl.
bool reference_available();
// SDXL_REFERENCE_REQUIRED=1 (set by .ci/run): a missing reference folder is a failure.
bool reference_required();
std::string reference_missing_reason();

std::filesystem::path project_dir();
std::filesystem::path subjects_dir();  // ../shared/subjects beside the reference folder

}  // namespace sdxl::test

// At the top of a parity test: skip with the reason on a user's clone without the
// reference data, fail when SDXL_REFERENCE_REQUIRED=1.
#define SDXL_REQUIRE_REFERENCE()                                             \
  do {                                                                       \
    if (!::sdxl::test::reference_available()) {                              \
      if (::sdxl::test::reference_required()) {                              \
        FAIL() << ::sdxl::test::reference_missing_reason();                  \
      } else {                                                               \
        GTEST_SKIP() << ::sdxl::test::reference_missing_reason();            \
      }                                                                      \
    }                                                                        \
  } while (0)
