#pragma once
// The outbox row kinds (store::Notification::kind) the dispatcher delivers, and what `recipient`
// holds for each.
#include <string_view>

namespace lifeline::home::notify {

inline constexpr std::string_view kKindEmail = "email";         // recipient: an email address
inline constexpr std::string_view kKindSms = "sms";             // a phone number, via the gateway
inline constexpr std::string_view kKindSmsEmail = "sms-email";  // an email-to-SMS address
inline constexpr std::string_view kKindWebhook = "webhook";     // a [[notify.webhook]] name

}  // namespace lifeline::home::notify
