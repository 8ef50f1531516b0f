#pragma once
// A blocking HTTPS client on a libcurl easy handle, for agents and gateways sending to the home.
// Blocking by design: callers run it on a worker thread, never on an io thread (STYLE: Async).
#include "common/result.h"
#include "transport/errors.h"

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
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
};

struct ClientResponse {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names; repeated fields joined with ", "
};

/// Keeps one connection alive between calls to the same host. Not thread-safe: one instance per
/// thread (or a mutex around it). Environment proxy variables (https_proxy, ...) are ignored on
/// purpose: the path to the home is configuration, not ambient state. A moved-from client may only
/// be destroyed or assigned to.
class HttpClient {
 public:
  explicit HttpClient(ClientTls tls);
  ~HttpClient();
  HttpClient(HttpClient&&) noexcept;
  HttpClient& operator=(HttpClient&&) noexcept;
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  /// Performs one request. Any HTTP status is a success here (the caller looks at `status`, see
  /// IsRetryableStatus); errors are Errc::kConnectFailed, kTimeout, kTlsFailed, kConnectionLost,
  /// kResponseTooLarge, kInvalidArgument (bad URL or not https) and kOther. Sort them with
  /// IsRetryable().
  [[nodiscard]] Result<ClientResponse> Send(const ClientRequest& request);

  /// libcurl's description of the last failure ("SSL certificate problem: unable to get local
  /// issuer certificate"), for log lines and operator messages; empty after a success.
  const std::string& LastErrorDetail() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lifeline::transport
