#include "sdxl_dreambooth/dist/collective_watchdog.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace sdxl::dist {
namespace {

using namespace std::chrono_literals;

// A collective as the device would report it: the test moves it along.
struct FakeCollective {
  std::atomic<Progress> started{Progress::kPending};
  std::atomic<Progress> finished{Progress::kPending};
  std::string error = "an illegal memory access was encountered";
};

WatchedCollective watched(const std::shared_ptr<FakeCollective>& f, const std::string& what,
                          const std::string& context = "step 3") {
  auto probe = [f](const std::atomic<Progress>& p, std::string* why) {
    const Progress v = p.load();
    if (v == Progress::kFailed) *why = f->error;
    return v;
  };
  return WatchedCollective{what, context, [f, probe](std::string* why) { return probe(f->started, why); },
                           [f, probe](std::string* why) { return probe(f->finished, why); }};
}

// What the watchdog reported, and when.
struct Failures {
  std::mutex mutex;
  std::vector<std::string> lines;
  std::chrono::steady_clock::time_point last;
  CollectiveWatchdog::Failure handler() {
    return [this](const WatchedCollective& c, const std::string& why) {
      std::lock_guard<std::mutex> lock(mutex);
      lines.push_back(c.what + " at " + c.context + ": " + why);
      last = std::chrono::steady_clock::now();
    };
  }
  std::vector<std::string> get() {
    std::lock_guard<std::mutex> lock(mutex);
    return lines;
  }
};

bool eventually(const std::function<bool()>& condition) {
  for (int i = 0; i < 1000; ++i) {
    if (condition()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return condition();
}

TEST(CollectiveWatchdog, FinishedCollectivesLeaveTheQueueInLaunchOrder) {
  Failures failures;
  CollectiveWatchdog dog(30.0, failures.handler());
  auto a = std::make_shared<FakeCollective>(), b = std::make_shared<FakeCollective>();
  dog.watch(watched(a, "first"));
  dog.watch(watched(b, "second"));
  // The second is done, but the first still holds the queue: the device runs them in order.
  b->started = Progress::kDone;
  b->finished = Progress::kDone;
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(dog.pending(), 2u);
  EXPECT_FALSE(dog.wait_idle(0.05));
  a->started = Progress::kDone;
  a->finished = Progress::kDone;
  EXPECT_TRUE(dog.wait_idle(10.0));
  EXPECT_EQ(dog.pending(), 0u);
  EXPECT_EQ(dog.failures(), 0u);
  EXPECT_TRUE(failures.get().empty());
}

TEST(CollectiveWatchdog, TheDeadlineRunsFromWhenTheDeviceReachesTheCollective) {
  // The step's kernels queued ahead of the all-reduce may take longer than the deadline; only
  // the collective itself is timed.
  Failures failures;
  // A deadline long enough that a loaded machine finishes the collective in time, and a wait
  // before it starts twice as long.
  CollectiveWatchdog dog(0.3, failures.handler());
  auto c = std::make_shared<FakeCollective>();
  dog.watch(watched(c, "all-reduce of LoRA gradients"));
  std::this_thread::sleep_for(600ms);
  EXPECT_TRUE(failures.get().empty());
  c->started = Progress::kDone;
  std::this_thread::sleep_for(20ms);
  c->finished = Progress::kDone;
  EXPECT_TRUE(dog.wait_idle(10.0));
  EXPECT_TRUE(failures.get().empty());
}

TEST(CollectiveWatchdog, ACollectiveStuckPastTheDeadlineIsReportedWithItsContext) {
  Failures failures;
  CollectiveWatchdog dog(0.2, failures.handler());
  auto stuck = std::make_shared<FakeCollective>(), behind = std::make_shared<FakeCollective>();
  dog.watch(watched(stuck, "all-reduce of LoRA gradients", "step 12"));
  dog.watch(watched(behind, "all-reduce of LoRA gradients", "step 13"));
  const auto start = std::chrono::steady_clock::now();
  stuck->started = Progress::kDone;
  ASSERT_TRUE(eventually([&] { return !failures.get().empty(); }));
  const auto lines = failures.get();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0],
            "all-reduce of LoRA gradients at step 12: did not complete within distributed.timeout_s = 0.2 s of "
            "starting on the device (a peer rank is stuck or gone)");
  EXPECT_GE(std::chrono::duration<double>(failures.last - start).count(), 0.2);
  // The handler returned (it ends the process in the program): what was pending is dropped.
  EXPECT_TRUE(dog.wait_idle(10.0));
  EXPECT_EQ(dog.failures(), 1u);
}

TEST(CollectiveWatchdog, AnErrorFromTheDeviceIsReportedAtOnce) {
  Failures failures;
  CollectiveWatchdog dog(600.0, failures.handler());
  auto c = std::make_shared<FakeCollective>();
  dog.watch(watched(c, "broadcast of the LoRA weights", "set-up"));
  c->started = Progress::kDone;
  c->finished = Progress::kFailed;
  ASSERT_TRUE(eventually([&] { return !failures.get().empty(); }));
  EXPECT_EQ(failures.get().at(0),
            "broadcast of the LoRA weights at set-up: an illegal memory access was encountered");
}

TEST(CollectiveWatchdog, TheCommunicatorsAsynchronousErrorIsReportedWhileACollectiveIsPending) {
  Failures failures;
  std::atomic<bool> broken{false};
  CollectiveWatchdog dog(600.0, failures.handler(),
                         [&] { return broken ? std::string("remote process exited or there was a network error") : ""; });
  auto c = std::make_shared<FakeCollective>();
  dog.watch(watched(c, "all-reduce of LoRA gradients"));
  std::this_thread::sleep_for(30ms);
  EXPECT_TRUE(failures.get().empty());
  broken = true;
  ASSERT_TRUE(eventually([&] { return !failures.get().empty(); }));
  EXPECT_EQ(failures.get().at(0),
            "all-reduce of LoRA gradients at step 3: remote process exited or there was a network error");
}

TEST(CollectiveWatchdog, AProbeThatThrowsIsAFailureNotACrash) {
  Failures failures;
  CollectiveWatchdog dog(600.0, failures.handler());
  dog.watch(WatchedCollective{"all-reduce", "step 1", [](std::string*) -> Progress {
                                throw std::runtime_error("cudaEventQuery: unspecified launch failure");
                              },
                              [](std::string*) { return Progress::kDone; }});
  ASSERT_TRUE(eventually([&] { return !failures.get().empty(); }));
  EXPECT_EQ(failures.get().at(0), "all-reduce at step 1: cudaEventQuery: unspecified launch failure");
}

TEST(CollectiveWatchdog, ThreadSetupRunsOnTheWatchdogsThreadAndStoppingDoesNotWaitForPendingWork) {
  Failures failures;
  std::atomic<bool> set_up_elsewhere{false};
  const auto caller = std::this_thread::get_id();
  const auto start = std::chrono::steady_clock::now();
  {
    CollectiveWatchdog dog(600.0, failures.handler(), {},
                           [&] { set_up_elsewhere = std::this_thread::get_id() != caller; });
    auto never = std::make_shared<FakeCollective>();
    never->started = Progress::kDone;
    dog.watch(watched(never, "all-reduce"));
    ASSERT_TRUE(eventually([&] { return set_up_elsewhere.load(); }));
  }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 5.0);
  EXPECT_TRUE(failures.get().empty());
}

}  // namespace
}  // namespace sdxl::dist
