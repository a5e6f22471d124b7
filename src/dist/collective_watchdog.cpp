#include "sdxl_dreambooth/dist/collective_watchdog.h"

#include <cstdio>
#include <exception>
#include <utility>

namespace sdxl::dist {

CollectiveWatchdog::CollectiveWatchdog(double timeout_s, Failure on_failure, Health health,
                                       std::function<void()> thread_setup, std::chrono::microseconds poll)
    : timeout_s_(timeout_s),
      on_failure_(std::move(on_failure)),
      health_(std::move(health)),
      thread_setup_(std::move(thread_setup)),
      poll_(poll) {
  thread_ = std::thread([this] { run(); });
}

CollectiveWatchdog::~CollectiveWatchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  changed_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void CollectiveWatchdog::watch(WatchedCollective collective) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(Entry{std::move(collective), false, {}});
  }
  changed_.notify_all();
}

std::size_t CollectiveWatchdog::pending() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return queue_.size();
}

std::size_t CollectiveWatchdog::failures() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return failures_;
}

bool CollectiveWatchdog::wait_idle(double max_s) const {
  std::unique_lock<std::mutex> lock(mutex_);
  return changed_.wait_for(lock, std::chrono::duration<double>(max_s), [this] { return queue_.empty(); });
}

void CollectiveWatchdog::run() {
  if (thread_setup_) {
    try {
      thread_setup_();
    } catch (const std::exception& e) {
      fail(Entry{WatchedCollective{"collective watchdog", "set-up", {}, {}}, false, {}}, e.what());
    }
  }
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    changed_.wait(lock, [this] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    Entry& front = queue_.front();
    lock.unlock();
    const bool left = poll_front(front);
    lock.lock();
    // A collective that left the queue lets the next be looked at at once; else pause.
    if (!left) changed_.wait_for(lock, poll_, [this] { return stop_; });
  }
}

bool CollectiveWatchdog::poll_front(Entry& e) {
  std::string why;
  Progress progress = Progress::kPending;
  try {
    if (health_) why = health_();
    if (!why.empty()) {
      progress = Progress::kFailed;
    } else {
      if (!e.started) {
        const Progress s = e.collective.started(&why);
        if (s == Progress::kDone) {
          e.started = true;
          e.started_at = std::chrono::steady_clock::now();
        } else {
          progress = s;
        }
      }
      if (e.started) {
        progress = e.collective.finished(&why);
        const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - e.started_at).count();
        if (progress == Progress::kPending && waited > timeout_s_) {
          char text[200];
          std::snprintf(text, sizeof text,
                        "did not complete within distributed.timeout_s = %g s of starting on the device (a peer rank "
                        "is stuck or gone)",
                        timeout_s_);
          why = text;
          progress = Progress::kFailed;
        }
      }
    }
  } catch (const std::exception& ex) {
    why = ex.what();
    progress = Progress::kFailed;
  }
  if (progress == Progress::kPending) return false;
  if (progress == Progress::kFailed) {
    fail(e, why);
    return true;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.pop_front();
  }
  changed_.notify_all();
  return true;
}

void CollectiveWatchdog::fail(const Entry& e, const std::string& why) {
  // Outside the lock: the handler may ask pending(). In the program it does not return.
  if (on_failure_) on_failure_(e.collective, why.empty() ? std::string("failed") : why);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++failures_;
    queue_.clear();
  }
  changed_.notify_all();
}

}  // namespace sdxl::dist
