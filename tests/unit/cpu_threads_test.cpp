// How many intra-op threads a run takes: OMP_NUM_THREADS when set, else this process's
// physical cores, shared with the node's other ranks unless the launcher bound it to its own.
#include "sdxl_dreambooth/util/cpu_threads.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>

using sdxl::util::cpu_threads;
using sdxl::util::threads_for_cores;

namespace {

// Sets (or unsets) OMP_NUM_THREADS for one test and restores it after.
class OmpNumThreads {
 public:
  explicit OmpNumThreads(const std::optional<std::string>& value) {
    if (const char* old = std::getenv("OMP_NUM_THREADS")) old_ = old;
    if (value) {
      setenv("OMP_NUM_THREADS", value->c_str(), 1);
    } else {
      unsetenv("OMP_NUM_THREADS");
    }
  }
  ~OmpNumThreads() {
    if (old_) {
      setenv("OMP_NUM_THREADS", old_->c_str(), 1);
    } else {
      unsetenv("OMP_NUM_THREADS");
    }
  }

 private:
  std::optional<std::string> old_;
};

}  // namespace

TEST(CpuThreads, UnboundRanksShareTheNodesCores) {
  EXPECT_EQ(threads_for_cores(2, 2, 1), 2);
  EXPECT_EQ(threads_for_cores(2, 2, 2), 1);
  EXPECT_EQ(threads_for_cores(64, 64, 8), 8);
  EXPECT_EQ(threads_for_cores(64, 64, 3), 21);
  EXPECT_EQ(threads_for_cores(4, 4, 16), 1) << "never fewer than one";
}

TEST(CpuThreads, ABoundRankTakesAllOfItsCores) {
  // mpirun --bind-to core / srun --cpus-per-task: the mask already is this rank's share.
  EXPECT_EQ(threads_for_cores(1, 2, 2), 1);
  EXPECT_EQ(threads_for_cores(16, 64, 4), 16);
  EXPECT_EQ(threads_for_cores(0, 64, 4), 1);
}

TEST(CpuThreads, OmpNumThreadsDecidesWhenSet) {
  const OmpNumThreads env(std::string("3"));
  const auto t = cpu_threads(2);
  EXPECT_EQ(t.threads, 3);
  EXPECT_EQ(t.why, "OMP_NUM_THREADS=3");
}

TEST(CpuThreads, WithoutOmpNumThreadsTheAffinityMaskDecides) {
  for (const std::optional<std::string>& value : {std::optional<std::string>{}, std::optional<std::string>{""}}) {
    const OmpNumThreads env(value);
    const auto one = cpu_threads(1);
    EXPECT_GE(one.threads, 1);
    EXPECT_NE(one.why.find("physical core(s)"), std::string::npos) << one.why;
    EXPECT_EQ(cpu_threads(1000).threads, one.why.find("bound to this rank") != std::string::npos ? one.threads : 1);
  }
}
