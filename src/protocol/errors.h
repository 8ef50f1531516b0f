#pragma once
// Why the home refuses a whole batch (or an enrollment). One table gives each reason its wire name, its
// HTTP status and whether a sender should retry (STYLE: one table maps error codes to HTTP status).
#include "common/result.h"

#include <optional>
#include <string_view>
#include <system_error>

namespace lifeline::protocol {

enum class Reject {
  kMalformedBody = 1,     // not a well-formed envelope/batch/request
  kBodyTooLarge,          // over the configured limit
  kUnsealFailed,          // could not be opened with the home's key: tampered, truncated or sealed to another home
  kBadSignature,          // opened, but the device's signature does not verify
  kUnsupportedVersion,    // protocol version the home does not speak
  kDeviceUnknown,         // no enrolled device with this identity
  kDeviceRevoked,         // the device was revoked
  kIdentityMismatch,      // TLS client certificate names another device than the batch
  kClientCertRequired,    // batches need a client certificate
  kClockSkew,             // sent_at too far from the home's clock
  kReplayedBatch,         // this batch id was already processed
  kTokenUnknown,          // enrollment token not issued (or mistyped)
  kTokenUsed,             // enrollment token already used
  kTokenExpired,          // enrollment token past its expiry
  kTokenIdentityMismatch, // token issued for another device identity
  kBadCsr,                // certificate signing request unreadable or not self-signed
  kUnauthorized,          // admin API: missing or unknown token
  kNotFound,              // no such resource
  kInternal,              // the home failed; retry later
};

std::string_view WireName(Reject reason);
std::optional<Reject> ParseWireName(std::string_view name);
int HttpStatus(Reject reason);
/// Whether a sender should try the same messages again later (in a new batch).
bool IsRetryable(Reject reason);

const std::error_category& RejectCategory();
inline std::error_code make_error_code(Reject reason) {
  return {static_cast<int>(reason), RejectCategory()};
}

}  // namespace lifeline::protocol

template <>
struct std::is_error_code_enum<lifeline::protocol::Reject> : std::true_type {};
