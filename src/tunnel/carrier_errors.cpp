#include <fmt/format.h>

#include <string>

#include "tunnel/carrier.h"

namespace lifeline::tunnel {
namespace {

const char* Describe(CarrierErrc code) {
  switch (code) {
    case CarrierErrc::kInvalidOptions:
      return "invalid carrier option (endpoint URL, proxy address, header or missing CA file)";
    case CarrierErrc::kTlsSetupFailed:
      return "TLS setup failed: CA, certificate or key file unreadable, or the key does not match";
    case CarrierErrc::kListenFailed:
      return "cannot listen on the address (in use, not permitted, or not on this host)";
    case CarrierErrc::kProxyUnreachable:
      return "the proxy is unreachable";
    case CarrierErrc::kProxyAuth:
      return "the proxy refused our credentials";
    case CarrierErrc::kHomeUnreachable:
      return "the home is unreachable";
    case CarrierErrc::kTimeout:
      return "the connection was not established in time";
    case CarrierErrc::kTlsFailed:
      return "TLS handshake or certificate verification failed";
    case CarrierErrc::kUpgradeFailed:
      return "the WebSocket upgrade failed (not a WebSocket server?)";
  }
  return "unknown carrier error";
}

class UpgradeRefused final : public std::error_category {
 public:
  const char* name() const noexcept override { return "lifeline.websocket_upgrade"; }
  std::string message(int status) const override {
    return fmt::format("the WebSocket upgrade was refused with HTTP {}", status);
  }
};

}  // namespace

const std::error_category& CarrierCategory() {
  static const EnumErrorCategory<CarrierErrc> category("lifeline.carrier", &Describe);
  return category;
}

const std::error_category& UpgradeRefusedCategory() {
  static const UpgradeRefused category;
  return category;
}

int UpgradeRefusedStatus(std::error_code error) {
  return error.category() == UpgradeRefusedCategory() ? error.value() : 0;
}

std::string DescribeDialError(const DialOptions& options, std::error_code error) {
  if (options.proxy.kind == transport::ProxyKind::kNone) {
    return fmt::format("{}: {}", options.endpoint, error.message());
  }
  return fmt::format("{} via {}: {}", options.endpoint, options.proxy.Describe(), error.message());
}

}  // namespace lifeline::tunnel
