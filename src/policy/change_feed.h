#pragma once
// Wakes long polls: the gateways' GET /v1/gateway/watch waits here until a policy change or an
// approval decision (or its timeout). Writers call Notify() after committing; waiters re-check their
// condition after every wake-up, so a spurious or unrelated wake costs one query.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace lifeline::policy {

class ChangeFeed {
 public:
  /// Something changed (a policy version, a request decided or expired).
  void Notify() {
    {
      std::lock_guard lock(mutex_);
      ++generation_;
    }
    changed_.notify_all();
  }
  /// The current generation: read it before checking the condition, then Wait(generation, ...).
  std::uint64_t Generation() const {
    std::lock_guard lock(mutex_);
    return generation_;
  }
  /// Returns when Notify() was called after `seen` was read, or at `deadline` (false), or on Stop.
  bool Wait(std::uint64_t seen, std::chrono::steady_clock::time_point deadline) {
    std::unique_lock lock(mutex_);
    return changed_.wait_until(lock, deadline, [&] { return generation_ != seen || stopped_; }) && !stopped_;
  }
  /// Releases every waiter at once (service stopping) and makes later waits return immediately.
  void Stop() {
    {
      std::lock_guard lock(mutex_);
      stopped_ = true;
    }
    changed_.notify_all();
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::uint64_t generation_ = 0;
  bool stopped_ = false;
};

}  // namespace lifeline::policy
