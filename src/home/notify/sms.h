#pragma once
// Text messages, two ways: an HTTP SMS gateway (POST with the number and the text), or a carrier's
// email-to-SMS address (a short plain email through the home's SMTP mailer).
#include "home/notify/outcome.h"
#include "transport/mailer.h"

#include <chrono>
#include <string>
#include <string_view>

namespace lifeline::home::notify {

/// The longest text we send: one GSM-7 segment. Longer texts are cut (with "…") before queueing.
inline constexpr std::size_t kSmsMaxChars = 160;

enum class SmsBodyFormat {
  kForm,  // application/x-www-form-urlencoded: to=...&text=...
  kJson,  // application/json: {"to": "...", "text": "..."}
};

struct SmsGatewaySettings {
  std::string url;  // http:// or https://; empty: no gateway configured
  SmsBodyFormat format = SmsBodyFormat::kForm;
  std::string to_field = "to";      // the gateway's names for the number and the text
  std::string text_field = "text";
  std::string from;                 // sender id; sent as `from_field` when not empty
  std::string from_field = "from";
  std::string bearer_token;         // Authorization: Bearer ...; or
  std::string username;             // HTTP basic authentication (with password)
  std::string password;
  std::chrono::seconds timeout{10};
  std::string ca_file;              // empty: the system store
};

/// The gateway request body for one message (exposed for tests).
std::string SmsGatewayBody(const SmsGatewaySettings& settings, std::string_view to,
                           std::string_view text);

/// POSTs one message to the gateway; the HTTP status is sorted like a webhook's.
DeliveryResult SendSmsViaGateway(const SmsGatewaySettings& settings, std::string_view to,
                                 std::string_view text);

/// Mails `text` (cut to kSmsMaxChars) to an email-to-SMS address with an empty subject: carriers
/// put the subject in front of the text, which would push it over one segment.
DeliveryResult SendSmsViaEmail(const transport::Mailer& mailer, std::string_view address,
                               std::string_view text);

}  // namespace lifeline::home::notify
