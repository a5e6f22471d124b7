// The message of the sdxl::Error a piece of code throws, for tests of error texts.
#pragma once

#include <functional>
#include <string>

namespace sdxl::test {

// what() of the sdxl::Error `f` throws; a test failure (and "(no error)") when it throws none.
std::string error_of(const std::function<void()>& f);

}  // namespace sdxl::test
