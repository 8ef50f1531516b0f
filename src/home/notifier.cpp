#include "home/notifier.h"

#include "common/log.h"
#include "home/notify/kinds.h"

#include <algorithm>

namespace lifeline::home {

namespace {

std::string_view Channel(std::string_view kind) {
  if (kind == notify::kKindEmail) {
    return "email";
  }
  if (kind == notify::kKindSms) {
    return "SMS";
  }
  if (kind == notify::kKindSmsEmail) {
    return "SMS by email";
  }
  if (kind == notify::kKindWebhook) {
    return "webhook";
  }
  return kind;
}

}  // namespace

Notifier::Notifier(store::HomeStore& store, transport::SmtpMailer mailer, const Clock& clock,
                   std::chrono::seconds retry_max)
    : Notifier(store,
               std::make_unique<notify::Dispatcher>(
                   std::make_unique<transport::SmtpMailer>(std::move(mailer)),
                   notify::DispatcherSettings{}, clock),
               clock, NotifierOptions{.retry_max = retry_max}) {}

Notifier::Notifier(store::HomeStore& store, std::unique_ptr<notify::Dispatcher> dispatcher,
                   const Clock& clock, NotifierOptions options)
    : store_(store), dispatcher_(std::move(dispatcher)), clock_(clock), options_(options) {}

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
    if (claimed < options_.claim_batch) {
      wake_.wait_for(lock, std::chrono::seconds(1), [this] { return woken_ || stopping_; });
    }
    woken_ = false;
    if (stopping_) {
      return;
    }
  }
}

std::chrono::seconds Notifier::RetryDelay(std::int64_t failed_attempts) const {
  // Doubling from retry_min, capped; the shift is bounded so it cannot overflow.
  const std::int64_t doubled = options_.retry_min.count()
                               << std::clamp<std::int64_t>(failed_attempts - 1, 0, 20);
  return std::chrono::seconds(std::min<std::int64_t>(options_.retry_max.count(), doubled));
}

int Notifier::DeliverDue() {
  auto log = log::Get("notify");
  auto due = store_.ClaimNotifications(options_.claim_batch, clock_.NowUnixMillis());
  if (!due) {
    log->error("cannot read the outbox: {}", due.error().message());
    return 0;
  }
  for (const auto& n : *due) {
    const notify::DeliveryResult result = dispatcher_->Deliver(n);
    const std::int64_t now_ms = clock_.NowUnixMillis();
    const std::int64_t attempt = n.attempts + 1;
    const std::string_view channel = Channel(n.kind);
    if (result.outcome == notify::Outcome::kSent) {
      log->info("{} to {} about ticket {}: sent (notification {}, attempt {})", channel,
                n.recipient, n.ticket_number, n.id, attempt);
      if (auto marked = store_.MarkNotificationSent(n.id, now_ms); !marked) {
        log->error("sent notification {} but could not record it: {}", n.id,
                   marked.error().message());
      }
      continue;
    }
    std::optional<std::int64_t> next_attempt_ms;
    const std::int64_t age_ms = now_ms - n.created_at_ms;
    if (result.outcome == notify::Outcome::kPermanent) {
      log->error("{} to {} about ticket {}: failed permanently (notification {}, attempt {}): {}",
                 channel, n.recipient, n.ticket_number, n.id, attempt, result.detail);
    } else if (age_ms >= options_.give_up_after.count() * 1000) {
      log->error(
          "{} to {} about ticket {}: still failing after {} s, giving up (notification {}, "
          "attempt {}): {}",
          channel, n.recipient, n.ticket_number, age_ms / 1000, n.id, attempt, result.detail);
    } else {
      // The row stays pending, so nothing is lost while the receiver is down.
      const std::chrono::seconds delay = RetryDelay(attempt);
      next_attempt_ms = now_ms + delay.count() * 1000;
      log->warn("{} to {} about ticket {}: failed (notification {}, attempt {}): {}; retrying in {} s",
                channel, n.recipient, n.ticket_number, n.id, attempt, result.detail,
                delay.count());
    }
    if (auto marked = store_.MarkNotificationFailed(n.id, result.detail, next_attempt_ms);
        !marked) {
      log->error("could not record the outcome of notification {}: {}", n.id,
                 marked.error().message());
    }
  }
  return static_cast<int>(due->size());
}

}  // namespace lifeline::home
