#pragma once
// A blocking HTTPS client on a libcurl easy handle, for agents and gateways sending to the home.
// Blocking by design: callers run it on a worker thread, never on an io thread (STYLE: Async).
#include "common/result.h"
#include "transport/errors.h"

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string_view>
#include <string>
#include <utility>
#include <vector>

namespace lifeline::transport {

/// The client's TLS settings. `ca_file` is the only trust anchor: the system store is not
/// consulted, so a server is trusted only if its chain leads to this (pinned) CA and its name
/// matches the URL's host.
struct ClientTls {
  std::string ca_file;
  std::string cert_file;  // client certificate for mutual TLS (PEM); optional
  std::string key_file;   // its private key (PEM); required with cert_file
};

/// How a request reaches the server. Names in the URL are resolved by the proxy (socks4a, socks5h,
/// CONNECT), so a device without DNS for the home's name still gets there.
enum class ProxyKind { kNone, kHttp, kSocks4, kSocks5 };

/// "direct", "HTTP proxy", "SOCKS4 proxy", "SOCKS5 proxy".
std::string_view ToString(ProxyKind kind);

struct ProxySettings {
  ProxyKind kind = ProxyKind::kNone;
  std::string address;   // "host:port", "10.0.0.1:3128", "[::1]:1080"; no scheme
  std::string username;  // optional: CONNECT with basic authentication, SOCKS5 user/password
  std::string password;
  /// Optional: the CA of a TLS-inspecting proxy, trusted for the transport beside the home CA. The
  /// sealed, signed payload keeps its end-to-end protection either way.
  std::string ca_file;

  /// For log lines: "direct" or "HTTP proxy 10.0.0.1:3128" (never the password).
  std::string Describe() const;
};

/// True for "host:port" with a numeric port, IPv6 literals in brackets ("[::1]:1080"); no scheme,
/// credentials, paths or spaces.
bool IsValidProxyAddress(std::string_view address);

/// Where the last failed request broke, so a caller can tell the operator what to fix.
enum class FailurePoint {
  kNone,              // the last request succeeded
  kRequest,           // refused locally: bad URL, header, option or CA file
  kProxyUnreachable,  // no TCP connection to the proxy
  kProxyAuth,         // the proxy refused our credentials (HTTP 407, SOCKS authentication)
  kHomeUnreachable,   // no connection to the server (directly, or the proxy could not reach it)
  kTls,               // TLS handshake or verification with the server failed
  kTlsInspected,      // verification failed through a proxy: it appears to inspect TLS
  kExchange,          // connected, then timed out, lost the connection or the answer was too large
};

struct ClientRequest {
  std::string method = "POST";
  std::string url;  // https only: "https://home.example.com:9455/v1/batches", "https://[::1]:9455/"
  std::string content_type;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::chrono::milliseconds timeout{30000};  // the whole exchange, connect included
  std::chrono::milliseconds connect_timeout{10000};
  std::size_t max_response_bytes =
      16 * 1024 * 1024;  // larger answers fail with Errc::kResponseTooLarge
  /// Overrides the client's proxy (SetProxy) for this request.
  std::optional<ProxySettings> proxy;
  /// Optional: polled by libcurl while the request runs (as data moves, and about once a second
  /// while it waits); returning true ends the request at once with Errc::kOther. Lets the owner of
  /// a long poll stop it without waiting for the server's answer or the timeout.
  std::function<bool()> abort;
};

struct ClientResponse {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names; repeated fields joined with ", "
};

/// Keeps one connection alive between calls to the same host. Not thread-safe: one instance per
/// thread (or a mutex around it). Environment proxy variables (https_proxy, ...) are ignored on
/// purpose: the path to the home is configuration (SetProxy, ClientRequest::proxy), not ambient
/// state. A moved-from client may only
/// be destroyed or assigned to.
class HttpClient {
 public:
  explicit HttpClient(ClientTls tls);
  ~HttpClient();
  HttpClient(HttpClient&&) noexcept;
  HttpClient& operator=(HttpClient&&) noexcept;
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  /// The proxy used by requests that do not name their own (default: direct).
  void SetProxy(ProxySettings proxy);

  /// Performs one request. Any HTTP status is a success here (the caller looks at `status`, see
  /// IsRetryableStatus); errors are Errc::kConnectFailed, kTimeout, kTlsFailed, kConnectionLost,
  /// kResponseTooLarge, kInvalidArgument (bad URL or not https) and kOther. Sort them with
  /// IsRetryable(). Proxy failures map to kConnectFailed (unreachable, refused credentials, could
  /// not reach the server) or kTlsFailed (TLS inspection); LastFailurePoint() tells them apart.
  [[nodiscard]] Result<ClientResponse> Send(const ClientRequest& request);

  /// What went wrong in the last request, for operators: names the proxy and the stage ("proxy
  /// authentication failed at HTTP proxy 10.0.0.1:3128 (HTTP 407)", "the proxy at ... appears to
  /// inspect TLS: ...") and ends with libcurl's own words. Empty after a success.
  const std::string& LastErrorDetail() const;
  FailurePoint LastFailurePoint() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lifeline::transport
