// Proxy settings without libcurl: the agent's resident process validates and describes connection
// paths from its configuration, but only the sender (a separate process) links the HTTP client.
#include "transport/http_client.h"

namespace lifeline::transport {

// "host:port" with a non-empty host and a numeric port; IPv6 literals in brackets. No scheme, no
// credentials, nothing curl would read as more than an address.
bool IsValidProxyAddress(std::string_view address) {
  if (address.empty() || address.size() > 300 ||
      address.find_first_of(std::string_view("/@ \t\r\n\0?#", 9)) != std::string_view::npos) {
    return false;
  }
  const std::size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == address.size()) {
    return false;
  }
  const std::string_view host = address.substr(0, colon);
  if (host.find(':') != std::string_view::npos && !(host.front() == '[' && host.back() == ']')) {
    return false;  // a bare IPv6 literal: the port would be ambiguous
  }
  for (char c : address.substr(colon + 1)) {
    if (c < '0' || c > '9') {
      return false;
    }
  }
  return address.size() - colon - 1 <= 5;
}

std::string_view ToString(ProxyKind kind) {
  switch (kind) {
    case ProxyKind::kNone:
      return "direct";
    case ProxyKind::kHttp:
      return "HTTP proxy";
    case ProxyKind::kSocks4:
      return "SOCKS4 proxy";
    case ProxyKind::kSocks5:
      return "SOCKS5 proxy";
  }
  return "direct";
}

std::string ProxySettings::Describe() const {
  if (kind == ProxyKind::kNone) {
    return "direct";
  }
  return std::string(ToString(kind)) + " " + address;
}

}  // namespace lifeline::transport
