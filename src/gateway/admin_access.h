#pragma once
// The client side of the gateway's local admin interface, for `lifeline gateway devices|sessions`:
// finds the running gateway from its gateway.toml (listen.admin, data_dir), reads its admin token
// and trusts only its self-signed certificate (data_dir/admin.crt), so it cannot be fooled by
// another program that took the port.
#include "common/result.h"
#include "transport/http_client.h"

#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace lifeline::gateway {

struct GatewayConfig;

enum class AdminAccessErrc {
  kNotRunning = 1,     // nothing answers at listen.admin
  kNoToken,            // data_dir/admin.token is missing: the gateway never started with this data_dir
  kTokenUnreadable,    // admin.token exists but cannot be read (permissions: run as the gateway's user)
  kWrongCertificate,   // something answers, but not with this gateway's admin.crt
  kFailed,             // timed out, connection lost, ...
};
const std::error_category& AdminAccessCategory();
inline std::error_code make_error_code(AdminAccessErrc code) {
  return {static_cast<int>(code), AdminAccessCategory()};
}

/// Sends one request to the local gateway: `method` ("GET", "POST", "PUT", "DELETE"), `target` (a
/// path with its query, "/v1/devices"), `body` (JSON, or "" for none). Any HTTP status is a success
/// here; the caller looks at it (401 means the token file does not match the running gateway).
/// On failure `*error_detail` (when given) gets one sentence for the operator, for example
/// "gateway not running at 127.0.0.1:9460 (is `lifeline gateway run` started?)".
[[nodiscard]] Result<transport::ClientResponse> CallGatewayAdmin(const GatewayConfig& config,
                                                                 std::string_view method,
                                                                 std::string_view target,
                                                                 std::string_view body,
                                                                 std::string* error_detail = nullptr);

}  // namespace lifeline::gateway

template <>
struct std::is_error_code_enum<lifeline::gateway::AdminAccessErrc> : std::true_type {};
