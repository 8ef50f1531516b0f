#include "home/notifier.h"

#include "common/log.h"

#include <algorithm>

namespace lifeline::home {

Notifier::Notifier(store::HomeStore& store, SmtpMailer mailer, const Clock& clock,
                   std::chrono::seconds retry_max)
    : store_(store), mailer_(std::move(mailer)), clock_(clock), retry_max_(retry_max) {}

Notifier::~Notifier() { Stop(); }

void Notifier::Start() { thread_ = std::thread([this] { Loop(); }); }

void Notifier::Wake() {
  {
    std::lock_guard lock(mutex_);
    woken_ = true;
  }
  wake_.notify_one();
}

void Notifier::Stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable()) {
    thread_.join();
  }
}

void Notifier::Loop() {
  for (;;) {
    const int claimed = DeliverDue();
    std::unique_lock lock(mutex_);
    if (stopping_) {
      return;
    }
    // A full claim means more may be waiting; otherwise sleep until woken or a retry may be due.
    if (claimed == 0) {
      wake_.wait_for(lock, std::chrono::seconds(1), [this] { return woken_ || stopping_; });
    }
    woken_ = false;
    if (stopping_) {
      return;
    }
  }
}

int Notifier::DeliverDue() {
  constexpr int kClaimBatch = 20;
  auto due = store_.ClaimNotifications(kClaimBatch, clock_.NowUnixMillis());
  if (!due) {
    log::Get("notify")->error("cannot read the outbox: {}", due.error().message());
    return 0;
  }
  for (const auto& n : *due) {
    std::string detail;
    auto sent = mailer_.Send(Email{.to = {n.recipient}, .subject = n.subject, .body = n.body}, &detail);
    const std::int64_t now_ms = clock_.NowUnixMillis();
    if (sent) {
      log::Get("notify")->info("emailed {} about ticket {}", n.recipient, n.ticket_number);
      if (auto marked = store_.MarkNotificationSent(n.id, now_ms); !marked) {
        log::Get("notify")->error("sent email {} but could not record it: {}", n.id, marked.error().message());
      }
      continue;
    }
    // Exponential backoff, 10 s doubling per attempt, capped; the row stays pending so nothing is lost.
    const std::int64_t delay_s = std::min<std::int64_t>(
        retry_max_.count(), std::int64_t{10} << std::min<std::int64_t>(n.attempts, 20));
    log::Get("notify")->warn("email to {} about ticket {} failed (attempt {}): {}; retrying in {} s",
                             n.recipient, n.ticket_number, n.attempts + 1, detail, delay_s);
    if (auto marked = store_.MarkNotificationFailed(n.id, detail, now_ms + delay_s * 1000);
        !marked) {
      log::Get("notify")->error("could not record the failed email {}: {}", n.id, marked.error().message());
    }
  }
  return static_cast<int>(due->size());
}

}  // namespace lifeline::home
