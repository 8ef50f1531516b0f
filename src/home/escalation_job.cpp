#include "home/escalation_job.h"

#include "common/log.h"

namespace lifeline::home {

namespace {

/// Pages of candidates per pass, and the most pages: bounded even with a huge backlog (the rest is
/// looked at in the next pass).
constexpr int kPageSize = 500;
constexpr int kMaxPages = 200;

}  // namespace

EscalationJob::EscalationJob(store::HomeStore& store, notify::EscalationPolicy policy, store::NotifyPlanner planner,
                             const Clock& clock)
    : store_(store), policy_(std::move(policy)), planner_(std::move(planner)), clock_(clock) {}

EscalationJob::~EscalationJob() { Stop(); }

EscalationJob::Pass EscalationJob::RunOnce() {
  Pass pass;
  if (!active()) {
    return pass;
  }
  auto log = log::Get("escalation");
  const std::int64_t now_ms = clock_.NowUnixMillis();
  std::int64_t after_id = 0;
  for (int page = 0; page < kMaxPages; ++page) {
    auto candidates = store_.ListEscalationCandidates(now_ms, after_id, kPageSize);
    if (!candidates) {
      log->error("cannot read the tickets due for escalation: {}", candidates.error().message());
      pass.failed = true;
      return pass;
    }
    for (const auto& c : *candidates) {
      ++pass.tickets;
      after_id = c.ticket.id;
      notify::TicketProgress progress{.opened_ms = c.ticket.episode_started_ms,
                                      .open = true,
                                      .acknowledged = false,
                                      .last_sent_ms = c.last_sent_ms};
      // Level 0 belongs to the ticket's opening (sent by the ticket path, or by nobody for a ticket
      // from before escalation existed): the job only sends the levels after it.
      auto& zero = progress.last_sent_ms[0];
      zero = std::max(zero, c.ticket.episode_started_ms);
      for (const auto& due : notify::DueEscalations(policy_, progress, now_ms)) {
        auto raw = c.last_sent_ms.find(due.level);
        const store::EscalationStep step{
            .ticket_id = c.ticket.id,
            .episode_started_ms = c.ticket.episode_started_ms,
            .level = due.level,
            .reminder = due.reminder,
            .previous_sent_ms = raw == c.last_sent_ms.end() ? std::nullopt : std::optional(raw->second)};
        auto sent = store_.Escalate(step, now_ms, planner_);
        if (!sent) {
          log->error("cannot escalate ticket {}: {}", c.ticket.number, sent.error().message());
          pass.failed = true;
          continue;
        }
        if (*sent) {
          ++pass.steps;
          log->info("ticket {} not acknowledged: {} level {}", c.ticket.number,
                    due.reminder ? "reminded" : "escalated to", due.level);
        }
      }
    }
    if (static_cast<int>(candidates->size()) < kPageSize) {
      break;
    }
  }
  return pass;
}

void EscalationJob::Start(std::chrono::milliseconds interval, std::function<void()> on_sent) {
  if (!active()) {
    return;
  }
  thread_ = std::thread([this, interval, on_sent = std::move(on_sent)] {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      lock.unlock();
      if (RunOnce().steps > 0 && on_sent) {
        on_sent();
      }
      lock.lock();
      stop_cv_.wait_for(lock, interval, [this] { return stopping_; });
    }
  });
}

void EscalationJob::Stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  }
}

}  // namespace lifeline::home
