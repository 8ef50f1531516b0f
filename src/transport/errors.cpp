#include "transport/errors.h"

namespace lifeline::transport {
namespace {

const char* Describe(Errc code) {
  switch (code) {
    case Errc::kInvalidArgument:
      return "invalid transport option (address, URL, method or thread count)";
    case Errc::kTlsSetupFailed:
      return "TLS setup failed: certificate, key or CA file unreadable, or the key does not match";
    case Errc::kListenFailed:
      return "cannot listen on the address (in use, not permitted, or not on this host)";
    case Errc::kConnectFailed:
      return "could not connect (refused, unreachable, or the name did not resolve)";
    case Errc::kTimeout:
      return "the request timed out";
    case Errc::kTlsFailed:
      return "TLS handshake or certificate verification failed";
    case Errc::kConnectionLost:
      return "the connection was closed or reset before a complete response arrived";
    case Errc::kResponseTooLarge:
      return "the response body is larger than allowed";
    case Errc::kOther:
      return "transport failure (see the transport log)";
  }
  return "unknown transport error";
}

}  // namespace

const std::error_category& ErrorCategory() {
  static const EnumErrorCategory<Errc> category("lifeline.transport", &Describe);
  return category;
}

bool IsRetryable(std::error_code error) {
  if (error.category() == ErrorCategory()) {
    switch (static_cast<Errc>(error.value())) {
      case Errc::kConnectFailed:
      case Errc::kTimeout:
      case Errc::kTlsFailed:
      case Errc::kConnectionLost:
        return true;
      case Errc::kInvalidArgument:
      case Errc::kTlsSetupFailed:
      case Errc::kListenFailed:
      case Errc::kResponseTooLarge:
      case Errc::kOther:
        return false;
    }
    return false;
  }
  // Errors from other layers (Asio sockets in the tunnel, system calls) compare against std::errc.
  return error == std::errc::connection_refused || error == std::errc::connection_reset ||
         error == std::errc::connection_aborted || error == std::errc::timed_out ||
         error == std::errc::host_unreachable || error == std::errc::network_unreachable ||
         error == std::errc::network_down || error == std::errc::broken_pipe ||
         error == std::errc::not_connected;
}

bool IsRetryableStatus(int http_status) {
  return (http_status >= 500 && http_status <= 599) || http_status == 408 || http_status == 429;
}

}  // namespace lifeline::transport
