#pragma once
// Carriers: the byte stream a tunnel (or an engineer's session) runs over, on both ends
// (docs/tunnel.md, "Carriers"). Two kinds, chosen by the dialer's endpoint URL:
//   tls://host:port        raw TLS on TCP
//   wss://host:port/path   a WebSocket (binary messages) inside TLS, for proxies that pass only
//   that
// The dialer reaches the listener directly or through an HTTP CONNECT, SOCKS5 or SOCKS4 proxy
// (libcurl does that part, as everywhere in Lifeline); one listener port serves both kinds: after
// the TLS handshake it looks at the first bytes ("GET " is a WebSocket upgrade, anything else raw
// TLS).
//
// Raw TLS: the dialing side speaks first (the listener waits for its first bytes to tell the kinds
// apart, up to the handshake timeout). HTTP/2 in either role does: a client sends its preface, a
// server its SETTINGS, without waiting for the peer.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/result.h"
#include "transport/http_client.h"
#include "transport/https_server.h"
#include "tunnel/byte_stream.h"

namespace lifeline::tunnel {

/// Why a dial (or a listener's start) failed: which hop, so an operator knows what to fix.
enum class CarrierErrc {
  kInvalidOptions = 1,  // bad endpoint URL, proxy address, header, or missing CA file
  kTlsSetupFailed,      // CA, certificate or key file unreadable, or the key does not match
  kListenFailed,        // bind/listen failed
  kProxyUnreachable,    // no TCP connection to the proxy
  kProxyAuth,           // the proxy refused our credentials (HTTP 407/401, SOCKS authentication)
  kHomeUnreachable,     // no connection to the home (the endpoint), directly or through the proxy
  kTimeout,             // the dial's deadline passed
  kTlsFailed,           // TLS handshake or certificate verification failed (either side refused)
  kUpgradeFailed,       // the WebSocket handshake failed without an HTTP status (not a WS server)
};
const std::error_category& CarrierCategory();
inline std::error_code make_error_code(CarrierErrc code) {
  return {static_cast<int>(code), CarrierCategory()};
}

/// "The WebSocket upgrade was refused with HTTP <status>": the error's value is the status.
const std::error_category& UpgradeRefusedCategory();
/// The HTTP status of a refused WebSocket upgrade, or 0 when `error` is something else.
int UpgradeRefusedStatus(std::error_code error);

struct DialOptions {
  /// "tls://host:port" or "wss://host:port/path"; IPv6 literals in brackets. The host is what the
  /// server certificate must name (DNS name or IP address) and, for names, the SNI.
  std::string endpoint;
  transport::ProxySettings proxy;  // direct by default; ca_file is not used here
  std::string ca_file;             // required: the only trust anchor for the server
  std::string cert_file;           // optional client certificate (mutual TLS), PEM
  std::string key_file;            // its key; required with cert_file
  /// Extra fields of the WebSocket upgrade request, e.g. {"Authorization", "Bearer ..."}; not sent
  /// on raw TLS.
  std::vector<std::pair<std::string, std::string>> headers;
  /// The whole dial: proxy, TCP, TLS and WebSocket handshakes.
  std::chrono::milliseconds connect_timeout{10000};
};

using DialHandler = std::function<void(Result<std::unique_ptr<ByteStream>>)>;

/// Connects as `options` say and calls `done` once, on a strand of `ex`, with the connected stream
/// (its executor is that strand) or a CarrierErrc / UpgradeRefusedCategory error. The failure is
/// also logged once (logger "tunnel") with the proxy's or OpenSSL's own words. The proxy and TCP
/// part blocks a small internal worker pool, never `ex`; the io_context of `ex` must keep running
/// until `done` has been called.
void AsyncDial(asio::any_io_executor ex, DialOptions options, DialHandler done);

/// One line for an operator: "wss://home:443/tunnel via HTTP proxy 10.0.0.1:3128: the proxy
/// refused our credentials (...)".
std::string DescribeDialError(const DialOptions& options, std::error_code error);

/// What the listener knows about a connection before it accepts it.
struct AcceptInfo {
  std::optional<transport::PeerCertificate> peer;  // the client's verified certificate, if any
  std::string remote;                              // "127.0.0.1:50000", "[::1]:50000"
  std::string target;                              // WebSocket request target; empty on raw TLS
  std::map<std::string, std::string> headers;      // lower-case names; empty on raw TLS
};

/// Returns 101 to accept. A WebSocket upgrade is otherwise answered with the returned status
/// (401, 403, 404, ...) and closed; a raw TLS connection is closed. Runs on the connection's
/// strand, so for several connections at once on a multi-threaded executor: thread-safe, and quick
/// (no blocking calls; blocking checks belong after accepting).
using AuthorizeFunction = std::function<int(const AcceptInfo&)>;
/// Gets each accepted connection, on its strand (the stream's executor).
using AcceptHandler = std::function<void(std::unique_ptr<ByteStream>, AcceptInfo)>;

struct ListenOptions {
  std::string listen = "127.0.0.1:0";  // "host:port" or "[v6]:port", IP literal; port 0 picks one
  transport::TlsServerFiles tls;
  /// kRequired for the gateways' tunnel port; kNone for the engineers' sessions port.
  transport::ClientCertPolicy client_certs = transport::ClientCertPolicy::kRequired;
  AuthorizeFunction authorize;  // empty: accept every connection whose TLS handshake succeeded
  /// TLS handshake, first bytes, WebSocket upgrade request and answer together.
  std::chrono::milliseconds handshake_timeout{10000};
  /// Connections being handshaken plus accepted streams not yet destroyed; more are closed at once.
  std::size_t max_connections = 1024;
  std::string name = "carrier";  // for log lines
};

class CarrierListener {
 public:
  /// Loads the TLS files, binds and starts accepting on `ex` (each connection gets its own strand).
  /// Errors: kInvalidOptions, kTlsSetupFailed, kListenFailed, each logged once.
  [[nodiscard]] static Result<std::unique_ptr<CarrierListener>> Start(asio::any_io_executor ex,
                                                                      ListenOptions options,
                                                                      AcceptHandler on_accept);
  CarrierListener(const CarrierListener&) = delete;
  CarrierListener& operator=(const CarrierListener&) = delete;
  /// Stop().
  ~CarrierListener();

  std::uint16_t LocalPort() const;
  /// Stops accepting and closes connections still in their handshakes; streams already handed to
  /// the AcceptHandler are the caller's. Thread-safe, idempotent; completes asynchronously on `ex`.
  void Stop();

  struct Impl;

 private:
  explicit CarrierListener(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace lifeline::tunnel

template <>
struct std::is_error_code_enum<lifeline::tunnel::CarrierErrc> : std::true_type {};
