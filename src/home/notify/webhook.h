#pragma once
// Webhooks: a JSON POST per notification, signed with HMAC-SHA256 so the receiver can tell it came
// from this home and was not replayed (docs/notifications.md has the verification recipe).
#include "home/notify/outcome.h"

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace lifeline::home::notify {

enum class WebhookFormat {
  kGeneric,  // our own JSON object (GenericJson)
  kSlack,    // {"text", "blocks"}: Slack incoming webhooks, Mattermost, Rocket.Chat (SlackJson)
};
std::string_view ToString(WebhookFormat format);  // "generic", "slack"

struct WebhookSettings {
  std::string name;  // what outbox rows and routing name it by; logs show this, never the URL
  std::string url;   // http:// or https://
  std::string secret;  // HMAC key; empty: requests go unsigned (Slack URLs are secret themselves)
  WebhookFormat format = WebhookFormat::kGeneric;
  std::chrono::seconds timeout{10};
  std::string ca_file;  // empty: the system store
};

/// "sha256=" + lower-case hex of HMAC-SHA256(secret, "<timestamp>.<body>").
std::string WebhookSignature(std::string_view secret, std::int64_t timestamp_s,
                             std::string_view body);

/// POSTs `body` (already rendered in the webhook's format) with the headers X-Lifeline-Timestamp
/// (`timestamp_s`, Unix seconds), X-Lifeline-Signature (when a secret is set), X-Lifeline-Delivery
/// (`delivery_id`: the same on every retry, so receivers can drop duplicates) and X-Lifeline-Event.
/// Blocking for at most settings.timeout.
DeliveryResult SendWebhook(const WebhookSettings& settings, std::string_view body,
                           std::int64_t timestamp_s, std::string_view delivery_id,
                           std::string_view event = "ticket");

}  // namespace lifeline::home::notify
