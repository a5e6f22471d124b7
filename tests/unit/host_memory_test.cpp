// Freed host memory stays mapped for the next step on the CPU: a block allocated again after it
// was freed costs no page faults, where glibc's defaults would map and fault it in anew.
#include "sdxl_dreambooth/util/host_memory.h"
#include "support/fake_env.h"

#include <gtest/gtest.h>

#include <sys/resource.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

using sdxl::util::keep_freed_host_memory;
using sdxl::util::user_malloc_settings;
using sdxl::test::env_of;

namespace {

long minor_faults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

// Allocates, writes every page of and frees `bytes`; returns the page faults that took.
long faults_to_fill(std::size_t bytes) {
  const long before = minor_faults();
  char* p = static_cast<char*>(std::malloc(bytes));
  if (p == nullptr) return -1;
  std::memset(p, 1, bytes);
  asm volatile("" : : "r"(p) : "memory");  // the writes must happen
  std::free(p);
  return minor_faults() - before;
}

}  // namespace

TEST(HostMemory, UsersOwnMallocSettingsDecide) {
  EXPECT_FALSE(user_malloc_settings(env_of({})));
  EXPECT_FALSE(user_malloc_settings(env_of({{"MALLOC_ARENA_MAX", "2"}, {"MALLOC_TRIM_THRESHOLD_", ""}})));
  EXPECT_FALSE(user_malloc_settings(env_of({{"GLIBC_TUNABLES", "glibc.malloc.arena_max=2"}})));
  EXPECT_EQ(user_malloc_settings(env_of({{"MALLOC_TRIM_THRESHOLD_", "1000000"}})), "MALLOC_TRIM_THRESHOLD_=1000000");
  EXPECT_EQ(user_malloc_settings(env_of({{"MALLOC_MMAP_MAX_", "0"}})), "MALLOC_MMAP_MAX_=0");
  EXPECT_EQ(user_malloc_settings(env_of({{"GLIBC_TUNABLES", "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=1"}})),
            "GLIBC_TUNABLES=glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=1");
}

TEST(HostMemory, GpuRunsKeepMallocDefaults) {
  const auto p = keep_freed_host_memory(/*cpu_compute=*/false);
  EXPECT_FALSE(p.kept);
  EXPECT_NE(p.why.find("GPU"), std::string::npos) << p.why;
}

TEST(HostMemory, BlocksFreedByAStepAreReusedWithoutPageFaults) {
#if !defined(__GLIBC__)
  GTEST_SKIP() << "the policy applies to glibc's malloc only";
#endif
  if (auto mine = user_malloc_settings([](const char* n) { return std::getenv(n); })) {
    GTEST_SKIP() << "the environment sets malloc options (" << *mine << "), and those decide";
  }
  const auto p = keep_freed_host_memory(/*cpu_compute=*/true);
  ASSERT_TRUE(p.kept) << p.why;
  // 64 MiB: above the 32 MiB up to which glibc would otherwise adapt, so by default every
  // allocation of it is a fresh mmap and all of its 16,384 pages fault.
  constexpr std::size_t kBytes = std::size_t(64) << 20;
  const long first = faults_to_fill(kBytes);
  const long again = faults_to_fill(kBytes);
  EXPECT_GT(first, 1000) << "the first fill maps new pages";
  EXPECT_LT(again, 100) << "a block freed and allocated again must not be faulted in again (first fill: " << first
                        << " faults)";
}
