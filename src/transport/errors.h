#pragma once
// Errors of the transport module (HTTPS server and client), and the one place that sorts a failed
// send into "retry later" or "give up" (STYLE: Errors).
#include "common/result.h"

#include <system_error>
#include <type_traits>

namespace lifeline::transport {

enum class Errc {
  kInvalidArgument = 1,  // bad option: listen address, URL, method, thread counts
  kTlsSetupFailed,    // certificate, key or CA file unreadable, or key does not match certificate
  kListenFailed,      // bind/listen failed (address in use, permission, address not on this host)
  kConnectFailed,     // no TCP connection: refused, unreachable, name did not resolve
  kTimeout,           // connect or whole-request deadline passed
  kTlsFailed,         // TLS handshake or certificate verification failed (either side refused)
  kConnectionLost,    // connected, then the peer closed or reset before a full response arrived
  kResponseTooLarge,  // the response body exceeded the client's limit
  kOther,             // anything else; details are in the transport log
};

const std::error_category& ErrorCategory();
inline std::error_code make_error_code(Errc code) {
  return {static_cast<int>(code), ErrorCategory()};
}

/// True when a send that failed with `error` may succeed if tried again later: no connection,
/// timeout, connection lost, and TLS failures. TLS failures are retried on purpose: they are
/// usually an expired certificate or a wrong clock that an operator fixes, and dropping queued
/// alerts meanwhile would lose them; callers back off and surface the error. Generic network
/// conditions (std::errc::connection_reset, timed_out, ...) from other layers count too. Everything
/// else (bad URL, response too large) is not.
bool IsRetryable(std::error_code error);

/// For a request that got an HTTP answer that is not 2xx: true for 5xx, 408 and 429 (the server may
/// accept the same request later); false for any other status, so a 4xx such as 400/403/413 is
/// dropped rather than retried forever (Fluent Bit's rule).
bool IsRetryableStatus(int http_status);

}  // namespace lifeline::transport

template <>
struct std::is_error_code_enum<lifeline::transport::Errc> : std::true_type {};
