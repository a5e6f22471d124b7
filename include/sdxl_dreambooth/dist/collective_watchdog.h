// Keeps the deadline of collectives that run on a device queue while the host goes on. The NCCL
// backend queues each all-reduce behind the step's kernels and returns at once; this thread
// follows them in launch order, and one that has started on the device but not finished within
// the deadline, or that the device or the communicator reports failed, goes to `on_failure`,
// which in the program ends the process (ncclCommAbort, a message, exit) so that the launcher
// ends the job. The host thread thus never waits for the device to keep the deadline, as
// PyTorch's ProcessGroupNCCL watchdog does. Knows nothing of CUDA or NCCL: tests drive it with
// plain functions.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace sdxl::dist {

enum class Progress { kPending, kDone, kFailed };

struct WatchedCollective {
  std::string what;     // "all-reduce of LoRA gradients"
  std::string context;  // "step 12"
  // Has the device reached the collective (everything queued before it done)? The deadline runs
  // from then: the step's own kernels ahead of it do not count against it. On kFailed, `why`.
  std::function<Progress(std::string* why)> started;
  // Is the device past it?
  std::function<Progress(std::string* why)> finished;
};

class CollectiveWatchdog {
 public:
  // Called on the watchdog's thread with the collective and why it failed ("did not complete
  // within distributed.timeout_s = 600 s …", the device's or communicator's error). In the
  // program it does not return; if it does (tests), everything still pending is dropped.
  using Failure = std::function<void(const WatchedCollective&, const std::string& why)>;
  // The communicator's asynchronous error while anything is pending; empty when there is none.
  using Health = std::function<std::string()>;

  // `thread_setup` runs first on the new thread (cudaSetDevice). `poll` is the pause between
  // looks at the oldest pending collective: a deadline of minutes needs no finer one, and the
  // thread should not take the core from the host thread that launches the kernels.
  CollectiveWatchdog(double timeout_s, Failure on_failure, Health health = {}, std::function<void()> thread_setup = {},
                     std::chrono::microseconds poll = std::chrono::milliseconds(10));
  // Stops the thread without waiting for what is pending (call wait_idle first to wait).
  ~CollectiveWatchdog();
  CollectiveWatchdog(const CollectiveWatchdog&) = delete;
  CollectiveWatchdog& operator=(const CollectiveWatchdog&) = delete;

  void watch(WatchedCollective collective);
  std::size_t pending() const;
  // Waits until nothing is pending; false when `max_s` seconds pass first.
  bool wait_idle(double max_s) const;
  // Collectives handed to on_failure so far.
  std::size_t failures() const;

 private:
  struct Entry {
    WatchedCollective collective;
    bool started = false;
    std::chrono::steady_clock::time_point started_at;
  };
  void run();
  // Polls the oldest entry once; true when it left the queue (finished or failed).
  bool poll_front(Entry& e);
  void fail(const Entry& e, const std::string& why);

  double timeout_s_;
  Failure on_failure_;
  Health health_;
  std::function<void()> thread_setup_;
  std::chrono::microseconds poll_;
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  // Only the watchdog's thread removes entries, from the front; push_back keeps references to
  // the others valid, so the front is polled without holding the lock.
  std::deque<Entry> queue_;
  std::size_t failures_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace sdxl::dist
