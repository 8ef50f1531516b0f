#pragma once
// The home's side of remote access (docs/gateway.md, "Remote sessions"): gateways' tunnels arrive on
// the tunnel port (mutual TLS, gateway certificates only) and engineers' session connections on the
// sessions port (WebSocket in TLS). An engineer first asks the admin API for a session to a
// device's application; the home asks the device's gateway, which decides and keeps the audit
// record. Each connection the engineer's `lifeline connect` then makes becomes one stream
// home → gateway → device. The home names a device and an application, never an address.
//
// Asio, the carrier and the multiplexer stay in remote_access.cpp; callers (the admin API, the
// service) see blocking calls with JSON answers.
#include "common/result.h"
#include "transport/https_server.h"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace lifeline::home {

struct RemoteAccessOptions {
  std::string tunnel_listen;    // gateways: "0.0.0.0:9458"
  std::string sessions_listen;  // engineers: "127.0.0.1:9457"
  transport::TlsServerFiles tls;  // the home's certificate; client_ca_file verifies gateways
  std::chrono::milliseconds ping_interval{20000};
  std::chrono::seconds devices_refresh{30};  // how often each gateway's device list is fetched
  std::chrono::seconds call_timeout{10};     // one request to a gateway over its tunnel
  /// At Stop: how long gateways get, after the GOAWAY, to open their tunnels elsewhere before the
  /// tunnels here close.
  std::chrono::milliseconds drain_grace{1000};
  int io_threads = 1;
};

/// Who asks: the admin API's authenticated caller.
struct RemoteCaller {
  std::string name;        // the admin token's name: the engineer in the audit record
  std::string token_hash;  // SHA-256 of their token: their session connections must carry the same token
};

class RemoteAccessHub {
 public:
  [[nodiscard]] static Result<std::unique_ptr<RemoteAccessHub>> Start(RemoteAccessOptions options);
  ~RemoteAccessHub();
  RemoteAccessHub(const RemoteAccessHub&) = delete;
  RemoteAccessHub& operator=(const RemoteAccessHub&) = delete;

  std::uint16_t TunnelPort() const;
  std::uint16_t SessionsPort() const;

  /// The admin API's /v1/sessions and /v1/gateways routes, after it authenticated the caller and
  /// checked their role: POST /v1/sessions {device, app, reason, service_request?} (201 open, 202
  /// pending approval: kept and followed like an open one), GET/DELETE /v1/sessions/{id},
  /// GET /v1/gateways. Blocks up to the call timeout per gateway asked.
  transport::HttpResponse HandleAdmin(const RemoteCaller& caller, const transport::HttpRequest& request);

  /// Asks every gateway to move away (GOAWAY), then closes tunnels and listeners.
  void Stop();

  struct Impl;

 private:
  explicit RemoteAccessHub(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace lifeline::home
