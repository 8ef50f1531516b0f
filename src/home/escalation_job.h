#pragma once
// The escalation job: every tickets.escalation_check it looks at the open, unacknowledged tickets
// outside maintenance, asks notify::DueEscalations what is due at the clock's now, and sends each
// step through HomeStore::Escalate (level k, or a reminder of the highest level after the repeat
// interval). Each step is applied conditionally on the level's last-sent time the job read, so homes
// sharing one PostgreSQL database may all run the job and each step still goes out once.
#include "common/clock.h"
#include "home/notify/escalation.h"
#include "store/home_store.h"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace lifeline::home {

class EscalationJob {
 public:
  /// `planner` renders the rows of each step (TicketEventPlanner::AsPlanner()).
  EscalationJob(store::HomeStore& store, notify::EscalationPolicy policy, store::NotifyPlanner planner,
                const Clock& clock);
  ~EscalationJob();

  struct Pass {
    int tickets = 0;  // candidates looked at
    int steps = 0;    // escalations and reminders sent
    bool failed = false;
  };
  /// One pass at the clock's now, on the calling thread. Tests call this with a fake clock.
  Pass RunOnce();

  /// Runs RunOnce every `interval` on a thread of its own until Stop(); calls `on_sent` after a pass
  /// that queued rows (wakes the notifier). Does nothing when the policy can never escalate.
  void Start(std::chrono::milliseconds interval, std::function<void()> on_sent);
  void Stop();

  /// Whether the policy has anything to do (levels or reminders).
  bool active() const { return !policy_.levels.empty() || policy_.repeat.count() > 0; }

 private:
  store::HomeStore& store_;
  const notify::EscalationPolicy policy_;
  const store::NotifyPlanner planner_;
  const Clock& clock_;
  std::mutex mutex_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace lifeline::home
