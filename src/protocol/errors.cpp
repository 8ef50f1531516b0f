#include "protocol/errors.h"

#include <array>

namespace lifeline::protocol {
namespace {

struct Row {
  Reject reason;
  std::string_view wire_name;
  int http_status;
  bool retryable;
  const char* description;
};

constexpr std::array kTable = {
    Row{Reject::kMalformedBody, "malformed_body", 400, false, "the request body is malformed"},
    Row{Reject::kBodyTooLarge, "body_too_large", 413, false, "the request body is too large"},
    Row{Reject::kUnsealFailed, "unseal_failed", 400, false,
        "the sealed batch could not be opened (tampered, truncated, or sealed to another home key)"},
    Row{Reject::kBadSignature, "bad_signature", 403, false,
        "the batch signature does not verify with the device's enrolled key"},
    Row{Reject::kUnsupportedVersion, "unsupported_version", 400, false,
        "the protocol version is not supported"},
    Row{Reject::kDeviceUnknown, "device_unknown", 403, false, "the device is not enrolled"},
    Row{Reject::kDeviceRevoked, "device_revoked", 403, false, "the device has been revoked"},
    Row{Reject::kIdentityMismatch, "identity_mismatch", 403, false,
        "the TLS client certificate belongs to another device than the batch"},
    Row{Reject::kClientCertRequired, "client_certificate_required", 401, false,
        "a client certificate is required"},
    Row{Reject::kClockSkew, "clock_skew", 400, true,
        "the batch time is too far from the home's clock (check the device's NTP)"},
    Row{Reject::kReplayedBatch, "replayed_batch", 409, false, "this batch was already received"},
    Row{Reject::kTokenUnknown, "token_unknown", 403, false, "the enrollment token is not known"},
    Row{Reject::kTokenUsed, "token_used", 403, false, "the enrollment token was already used"},
    Row{Reject::kTokenExpired, "token_expired", 403, false, "the enrollment token has expired"},
    Row{Reject::kTokenIdentityMismatch, "token_identity_mismatch", 403, false,
        "the enrollment token was issued for another device"},
    Row{Reject::kBadCsr, "bad_csr", 400, false, "the certificate signing request is invalid"},
    Row{Reject::kUnauthorized, "unauthorized", 401, false, "a valid admin token is required"},
    Row{Reject::kNotFound, "not_found", 404, false, "not found"},
    Row{Reject::kInternal, "internal_error", 500, true, "the home could not process the request"},
};

const Row& Find(Reject reason) {
  for (const auto& row : kTable) {
    if (row.reason == reason) {
      return row;
    }
  }
  return kTable.back();
}

class RejectErrorCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "lifeline.protocol"; }
  std::string message(int value) const override {
    return Find(static_cast<Reject>(value)).description;
  }
};

}  // namespace

std::string_view WireName(Reject reason) { return Find(reason).wire_name; }
int HttpStatus(Reject reason) { return Find(reason).http_status; }
bool IsRetryable(Reject reason) { return Find(reason).retryable; }

std::optional<Reject> ParseWireName(std::string_view name) {
  for (const auto& row : kTable) {
    if (row.wire_name == name) {
      return row.reason;
    }
  }
  return std::nullopt;
}

const std::error_category& RejectCategory() {
  static const RejectErrorCategory category;
  return category;
}

}  // namespace lifeline::protocol
