#pragma once
// An HTTPS/1.1 server for the home's ingest and admin APIs and the gateway. Asio, Beast and OpenSSL
// stay in https_server.cpp: callers see plain request/response structs and a blocking handler.
// ServerOptions::plain_http serves plain HTTP instead, on loopback addresses only (the policy
// manager's optional listen.http, for a reverse proxy or browser on the same machine).
//
// Threads: `io_threads` run the network (TLS, HTTP parsing, one strand per connection); handlers
// run on a separate pool of `worker_threads`, because they may block (SQLite, fsync). Each
// connection handles one request at a time (no pipelining), keep-alive between requests.
#include "common/result.h"
#include "transport/errors.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace lifeline::transport {

/// PEM files of the server's TLS identity.
struct TlsServerFiles {
  std::string cert_file;  // server certificate chain, leaf first
  std::string key_file;   // its private key (unencrypted PEM)
  std::string
      client_ca_file;  // the CA that signs client certificates; unused with ClientCertPolicy::kNone
};

/// Whether clients must present a certificate signed by `client_ca_file`. A certificate that does
/// not verify is refused in every mode except kNone (where none is asked for).
enum class ClientCertPolicy { kNone, kOptional, kRequired };

/// The client's verified leaf certificate.
struct PeerCertificate {
  std::string pem;
};

struct HttpRequest {
  std::string method;                          // "GET", "POST", ...
  std::string target;                          // path and query, as sent: "/v1/batches?x=1"
  std::map<std::string, std::string> headers;  // lower-case names; repeated fields joined with ", "
  std::string body;
  std::optional<PeerCertificate> peer;  // set when the client presented a certificate that verified
  std::string remote;                   // "192.0.2.1:50000" or "[2001:db8::1]:50000"
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";  // empty: no Content-Type header
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra header fields
};

/// Called once per request on a worker thread; may block. An exception that escapes becomes a 500
/// and one error log line. Several requests may be handled at the same time: the handler must be
/// thread-safe.
using Handler = std::function<HttpResponse(const HttpRequest&)>;

struct ServerOptions {
  // "host:port" or "[v6]:port"; the host is an IP literal or "localhost"; port 0 picks a free port.
  std::string listen = "127.0.0.1:0";
  // No TLS at all: `tls`, `client_certs` and `handshake_timeout` are ignored and request.peer is
  // never set. Start refuses it unless `listen` is a loopback address (127.0.0.0/8, ::1,
  // localhost): whatever crosses it (passwords, tokens) is readable by anyone on the path.
  bool plain_http = false;
  TlsServerFiles tls;
  ClientCertPolicy client_certs = ClientCertPolicy::kOptional;
  std::size_t max_body_bytes = 1024 * 1024;  // larger requests get 413 and the connection is closed
  std::chrono::seconds handshake_timeout{10};
  std::chrono::seconds read_timeout{30};  // first request header, each body, each response write
  std::chrono::seconds idle_timeout{60};  // a kept-alive connection waiting for its next request
  int io_threads = 1;
  int worker_threads = 2;
  std::size_t max_connections = 1024;  // further connections are closed right after accept
  std::string name;                    // shown in log lines: "ingest", "admin", ...
};

/// Event counts since Start(), for metrics and tests.
struct ServerStats {
  std::uint64_t connections_accepted = 0;
  std::uint64_t connections_rejected = 0;  // over max_connections, or arriving while stopping
  std::uint64_t tls_handshake_failures = 0;  // always 0 with plain_http
  std::uint64_t requests = 0;            // requests passed to the handler
  std::uint64_t handler_exceptions = 0;  // answered with 500
  std::uint64_t malformed_requests = 0;  // answered with 400/431
  std::uint64_t oversized_requests = 0;  // answered with 413
};

class HttpsServer {
 public:
  /// Loads the TLS files (unless plain_http), binds, and starts serving. Errors:
  /// Errc::kInvalidArgument (options, listen address, plain_http off loopback),
  /// Errc::kTlsSetupFailed (files), Errc::kListenFailed (bind/listen); each is logged once.
  [[nodiscard]] static Result<std::unique_ptr<HttpsServer>> Start(ServerOptions options,
                                                                  Handler handler);

  HttpsServer(const HttpsServer&) = delete;
  HttpsServer& operator=(const HttpsServer&) = delete;
  /// Stop(0ms) if Stop() was not called.
  ~HttpsServer();

  /// The bound address with the real port: "127.0.0.1:41234", "[::1]:41234".
  std::string LocalAddress() const;
  std::uint16_t LocalPort() const;
  ServerStats Stats() const;

  /// Stops accepting and closes idle connections at once; requests already being received or
  /// handled may finish and get their response within `grace`; then closes every connection and
  /// joins all threads. A handler still running after `grace` is waited for (it cannot be
  /// interrupted), but its response is not sent. Idempotent. Must not be called from a handler.
  void Stop(std::chrono::milliseconds grace);

  class Impl;

 private:
  explicit HttpsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// The subject of a certificate in RFC 2253 form ("CN=device-1,O=Example"). Errc::kInvalidArgument
/// when the PEM does not parse.
[[nodiscard]] Result<std::string> PeerCertificateSubject(const PeerCertificate& peer);

}  // namespace lifeline::transport
