#pragma once
// The outcome of one delivery attempt, as the notifier acts on it: sent, try again later, or give
// up. Every channel sorts its failures into these three in one function each (ClassifyHttpStatus,
// ClassifyTransferError, ClassifyMailFailure), so "retry or drop" is decided in one place per
// channel and tested there.
#include <string>
#include <string_view>
#include <system_error>

namespace lifeline::home::notify {

enum class Outcome {
  kSent,       // the receiver took it (2xx, SMTP 250)
  kRetry,      // may work later: the receiver is down, overloaded, timed out or asked to retry
  kPermanent,  // will never work as configured: 4xx other than 408/429, a malformed URL, a bad address
};
std::string_view ToString(Outcome outcome);  // "sent", "retry", "failed"

struct DeliveryResult {
  Outcome outcome = Outcome::kSent;
  std::string detail;  // for the outbox's last_error and the log line: "HTTP 503: busy"

  static DeliveryResult Sent(std::string detail = {}) { return {Outcome::kSent, std::move(detail)}; }
  static DeliveryResult Retry(std::string detail) { return {Outcome::kRetry, std::move(detail)}; }
  static DeliveryResult Permanent(std::string detail) {
    return {Outcome::kPermanent, std::move(detail)};
  }
};

/// 2xx: sent. 408, 429 and 5xx: retry (transport::IsRetryableStatus). Anything else (1xx, 3xx —
/// redirects are not followed —, other 4xx): permanent.
Outcome ClassifyHttpStatus(int status);

/// A libcurl result code from a POST that got no HTTP answer: connection, name resolution, TLS,
/// timeouts and broken exchanges retry (an operator can fix them and nothing should be lost
/// meanwhile); a malformed URL or an unsupported scheme is permanent.
Outcome ClassifyTransferError(int curl_code);

/// An SmtpMailer failure (`error` and its detail text): an invalid message is permanent, and so is
/// a mailbox the server refuses outright (reply 550, 551, 553); everything else (server down, TLS,
/// authentication, 4xx replies) retries.
Outcome ClassifyMailFailure(std::error_code error, std::string_view detail);

}  // namespace lifeline::home::notify
