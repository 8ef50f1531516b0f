#pragma once
// Delivers the outbox: a thread that claims due notifications from the store, sends each through SMTP
// and records the outcome. Ingest only writes outbox rows, so a slow or dead mail server never slows it.
#include "common/clock.h"
#include "home/mailer.h"
#include "store/home_store.h"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace lifeline::home {

class Notifier {
 public:
  Notifier(store::HomeStore& store, SmtpMailer mailer, const Clock& clock,
           std::chrono::seconds retry_max);
  ~Notifier();

  void Start();
  /// Wakes the thread now (new outbox rows were committed).
  void Wake();
  /// Finishes the email in flight, then stops.
  void Stop();

 private:
  void Loop();
  /// Sends what is due; returns how many were claimed.
  int DeliverDue();

  store::HomeStore& store_;
  SmtpMailer mailer_;
  const Clock& clock_;
  std::chrono::seconds retry_max_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool woken_ = false;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace lifeline::home
