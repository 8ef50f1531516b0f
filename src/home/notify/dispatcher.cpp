#include "home/notify/dispatcher.h"

#include "home/notify/kinds.h"

#include <fmt/format.h>

#include <algorithm>

namespace lifeline::home::notify {

Dispatcher::Dispatcher(std::unique_ptr<transport::Mailer> mailer, DispatcherSettings settings,
                       const Clock& clock)
    : mailer_(std::move(mailer)), settings_(std::move(settings)), clock_(clock) {}

const WebhookSettings* Dispatcher::FindWebhook(std::string_view name) const {
  auto it = std::find_if(settings_.webhooks.begin(), settings_.webhooks.end(),
                         [name](const WebhookSettings& w) { return w.name == name; });
  return it == settings_.webhooks.end() ? nullptr : &*it;
}

DeliveryResult Dispatcher::Deliver(const store::Notification& n) const {
  if (n.kind == kKindEmail) {
    std::string detail;
    auto sent = mailer_->Send(
        transport::Email{.to = {n.recipient}, .subject = n.subject, .body = n.body}, &detail);
    if (sent) {
      return DeliveryResult::Sent();
    }
    if (detail.empty()) {
      detail = sent.error().message();
    }
    return ClassifyMailFailure(sent.error(), detail) == Outcome::kPermanent
               ? DeliveryResult::Permanent(detail)
               : DeliveryResult::Retry(detail);
  }
  if (n.kind == kKindSmsEmail) {
    return SendSmsViaEmail(*mailer_, n.recipient, n.body);
  }
  if (n.kind == kKindSms) {
    return SendSmsViaGateway(settings_.sms_gateway, n.recipient, n.body);
  }
  if (n.kind == kKindWebhook) {
    const WebhookSettings* hook = FindWebhook(n.recipient);
    if (hook == nullptr) {
      return DeliveryResult::Permanent(
          fmt::format("no [[notify.webhook]] named '{}' is configured", n.recipient));
    }
    // The delivery id is the outbox row id: the same on every retry, so a receiver that saw a
    // request whose answer we lost can drop the repeat.
    return SendWebhook(*hook, n.body, clock_.NowUnixSeconds(), fmt::format("{}", n.id));
  }
  return DeliveryResult::Permanent(fmt::format("unknown notification kind '{}'", n.kind));
}

}  // namespace lifeline::home::notify
