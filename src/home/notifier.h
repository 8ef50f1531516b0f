#pragma once
// Delivers the outbox: a thread that claims due notifications from the store, sends each through
// the channel its kind names (notify::Dispatcher: email, SMS, email-to-SMS, webhook) and records
// the outcome: sent, retried later with exponential backoff, or failed for good. Ingest only writes
// outbox rows, so a slow or dead receiver never slows it.
#include "common/clock.h"
#include "home/notify/dispatcher.h"
#include "store/home_store.h"
#include "transport/mailer.h"

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

namespace lifeline::home {

struct NotifierOptions {
  /// Wait before the second attempt; it doubles per failed attempt up to retry_max.
  std::chrono::seconds retry_min{10};
  std::chrono::seconds retry_max{3600};
  /// A row still failing this long after it was queued is marked failed instead of retried.
  std::chrono::seconds give_up_after = std::chrono::hours(48);
  int claim_batch = 20;
};

class Notifier {
 public:
  /// Email only: rows of kind "email" and "sms-email" go through `mailer`; webhooks and gateway
  /// SMS fail permanently.
  Notifier(store::HomeStore& store, transport::SmtpMailer mailer, const Clock& clock,
           std::chrono::seconds retry_max);
  Notifier(store::HomeStore& store, std::unique_ptr<notify::Dispatcher> dispatcher,
           const Clock& clock, NotifierOptions options);
  ~Notifier();

  void Start();
  /// Wakes the thread now (new outbox rows were committed).
  void Wake();
  /// Finishes the delivery in flight, then stops.
  void Stop();

  /// Delivers what is due at the clock's now on the calling thread and records each outcome;
  /// returns how many rows were claimed. The thread calls this; tests may call it instead of
  /// Start() (not both at once).
  int DeliverDue();

  /// The wait before attempt `failed_attempts + 1` (exposed for tests).
  std::chrono::seconds RetryDelay(std::int64_t failed_attempts) const;

 private:
  void Loop();

  store::HomeStore& store_;
  std::unique_ptr<notify::Dispatcher> dispatcher_;
  const Clock& clock_;
  NotifierOptions options_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool woken_ = false;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace lifeline::home
