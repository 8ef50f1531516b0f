#include "home/notify/outcome.h"

#include "transport/errors.h"
#include "transport/mailer.h"

#include <curl/curl.h>

namespace lifeline::home::notify {

std::string_view ToString(Outcome outcome) {
  switch (outcome) {
    case Outcome::kSent: return "sent";
    case Outcome::kRetry: return "retry";
    case Outcome::kPermanent: return "failed";
  }
  return "failed";
}

Outcome ClassifyHttpStatus(int status) {
  if (status >= 200 && status <= 299) {
    return Outcome::kSent;
  }
  return transport::IsRetryableStatus(status) ? Outcome::kRetry : Outcome::kPermanent;
}

Outcome ClassifyTransferError(int curl_code) {
  switch (static_cast<CURLcode>(curl_code)) {
    case CURLE_OK:
      return Outcome::kSent;
    // The request itself can never be made: fix the configuration, then resend by hand.
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_NOT_BUILT_IN:
    case CURLE_BAD_FUNCTION_ARGUMENT:
      return Outcome::kPermanent;
    // Everything else happens on the way (DNS, connect, TLS, timeouts, resets) or is a local
    // setting an operator repairs (a CA file): keep the notification until it goes through.
    default:
      return Outcome::kRetry;
  }
}

Outcome ClassifyMailFailure(std::error_code error, std::string_view detail) {
  if (!error) {
    return Outcome::kSent;
  }
  if (error == transport::MailErrc::kInvalidMessage) {
    return Outcome::kPermanent;
  }
  // SmtpMailer's detail ends "(curl error N, server reply NNN)". 550/551/553 refuse the mailbox
  // itself (unknown user, relaying denied, bad address): a retry gets the same answer.
  for (std::string_view code : {"server reply 550", "server reply 551", "server reply 553"}) {
    if (detail.find(code) != std::string_view::npos) {
      return Outcome::kPermanent;
    }
  }
  return Outcome::kRetry;
}

}  // namespace lifeline::home::notify
