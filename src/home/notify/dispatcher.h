#pragma once
// Sends one outbox row through the channel its kind names (kinds.h) and sorts the result into sent,
// retry or permanent failure. The Notifier owns the loop, the backoff and the bookkeeping; this
// only knows the channels.
#include "common/clock.h"
#include "home/notify/outcome.h"
#include "home/notify/sms.h"
#include "home/notify/webhook.h"
#include "store/home_store.h"
#include "transport/mailer.h"

#include <memory>
#include <string_view>
#include <vector>

namespace lifeline::home::notify {

struct DispatcherSettings {
  std::vector<WebhookSettings> webhooks;
  SmsGatewaySettings sms_gateway;  // url empty: kind "sms" rows fail permanently
};

class Dispatcher {
 public:
  /// `mailer` carries "email" and "sms-email" rows; `clock` stamps webhook signatures.
  Dispatcher(std::unique_ptr<transport::Mailer> mailer, DispatcherSettings settings,
             const Clock& clock);

  /// Delivers one row; blocking for at most the channel's timeout. Call it from the notifier's
  /// thread, never an I/O thread. A kind or webhook name it does not know is a permanent failure
  /// (the row was written by a newer version or the config lost the webhook).
  DeliveryResult Deliver(const store::Notification& notification) const;

  const WebhookSettings* FindWebhook(std::string_view name) const;

 private:
  std::unique_ptr<transport::Mailer> mailer_;
  DispatcherSettings settings_;
  const Clock& clock_;
};

}  // namespace lifeline::home::notify
