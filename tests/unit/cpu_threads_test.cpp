// How many intra-op threads a run takes: OMP_NUM_THREADS when set, else this process's
// physical cores, shared with the node's other ranks unless the launcher bound it to its own.
#include "sdxl_dreambooth/util/cpu_threads.h"

#include "sdxl_dreambooth/error.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>
#include <vector>

using sdxl::util::affinity_mask;
using sdxl::util::cpu_threads;
using sdxl::util::CpuMask;
using sdxl::util::threads_for_masks;

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

// A mask of logical CPUs [first, last].
CpuMask cpus(int first, int last) {
  CpuMask m;
  for (int c = first; c <= last; ++c) m.set(static_cast<std::size_t>(c));
  return m;
}

// Each logical CPU its own physical core.
std::pair<long, long> own_core(int cpu) { return {0, cpu}; }

}  // namespace

TEST(CpuThreads, UnboundRanksShareTheNodesCores) {
  const CpuMask all = cpus(0, 63);
  EXPECT_EQ(threads_for_masks({all}, 0, own_core), 64);
  EXPECT_EQ(threads_for_masks({all, all}, 1, own_core), 32);
  EXPECT_EQ(threads_for_masks(std::vector<CpuMask>(8, all), 3, own_core), 8);
  EXPECT_EQ(threads_for_masks(std::vector<CpuMask>(3, all), 0, own_core), 21);
  EXPECT_EQ(threads_for_masks(std::vector<CpuMask>(100, all), 0, own_core), 1) << "never fewer than one";
}

TEST(CpuThreads, ARankBoundToItsOwnCoresTakesThemAll) {
  // mpirun --bind-to core, srun --cpus-per-task=16 with task binding: disjoint masks.
  const std::vector<CpuMask> node{cpus(0, 15), cpus(16, 31), cpus(32, 47), cpus(48, 63)};
  for (std::size_t r = 0; r < node.size(); ++r) EXPECT_EQ(threads_for_masks(node, r, own_core), 16);
  EXPECT_EQ(threads_for_masks({cpus(0, 0), cpus(1, 1)}, 1, own_core), 1);
}

TEST(CpuThreads, RanksBoundToASocketShareIt) {
  // mpirun --bind-to socket, 4 ranks on each of two 32-core sockets.
  std::vector<CpuMask> node(4, cpus(0, 31));
  node.resize(8, cpus(32, 63));
  EXPECT_EQ(threads_for_masks(node, 0, own_core), 8);
  EXPECT_EQ(threads_for_masks(node, 7, own_core), 8);
}

TEST(CpuThreads, HyperthreadsOfOneCoreCountOnce) {
  const auto smt = [](int cpu) { return std::pair<long, long>{0, cpu % 8}; };  // CPUs c and c+8 share a core
  EXPECT_EQ(threads_for_masks({cpus(0, 15)}, 0, smt), 8);
  EXPECT_EQ(threads_for_masks({cpus(0, 15), cpus(0, 15)}, 0, smt), 4);
}

TEST(CpuThreads, OmpNumThreadsDecidesWhenSet) {
  const OmpNumThreads env(std::string("3"));
  const auto t = cpu_threads({affinity_mask()}, 0);
  EXPECT_EQ(t.threads, 3);
  EXPECT_EQ(t.why, "OMP_NUM_THREADS=3");
}

TEST(CpuThreads, ABadOmpNumThreadsIsAClearError) {
  {
    const OmpNumThreads env(std::string("4,2"));  // OpenMP's nested list: the outer level counts
    EXPECT_EQ(cpu_threads({affinity_mask()}, 0).threads, 4);
  }
  for (const std::string bad : {"four", "0", "-2", "3x", "99999999999"}) {
    const OmpNumThreads env(bad);
    try {
      cpu_threads({affinity_mask()}, 0);
      ADD_FAILURE() << "OMP_NUM_THREADS=" << bad << " was taken";
    } catch (const sdxl::UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("OMP_NUM_THREADS=\"" + bad + "\": expected a whole number"),
                std::string::npos)
          << e.what();
    }
  }
}

TEST(CpuThreads, WithoutOmpNumThreadsTheAffinityMaskDecides) {
  for (const std::optional<std::string>& value : {std::optional<std::string>{}, std::optional<std::string>{""}}) {
    const OmpNumThreads env(value);
    const CpuMask mine = affinity_mask();
    EXPECT_TRUE(mine.any());
    const auto one = cpu_threads({mine}, 0);
    EXPECT_EQ(one.threads, threads_for_masks({mine}, 0));
    EXPECT_NE(one.why.find("physical core(s) in this rank's affinity mask, shared by 1 rank(s)"), std::string::npos)
        << one.why;
    EXPECT_EQ(cpu_threads({mine, mine}, 1).threads, std::max(1, one.threads / 2));
  }
}
