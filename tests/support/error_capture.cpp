#include "support/error_capture.h"

#include "sdxl_dreambooth/error.h"

#include <gtest/gtest.h>

namespace sdxl::test {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an error";
  return "(no error)";
}

}  // namespace sdxl::test
