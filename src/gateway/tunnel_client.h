#pragma once
// The gateway's outbound tunnel(s) to the home (docs/gateway.md, "Tunnel"). The gateway dials (TLS
// or WebSocket in TLS, directly or through the site's HTTP/SOCKS proxies), then serves HTTP/2
// streams the home opens inside it: session requests, session connections (spliced to the device's
// registered address and port) and the device list. Nothing listens for the home: every byte of a
// session travels over a connection the gateway opened.
//
// Resilience: a lost tunnel is dialled again after a jittered backoff (0.5 s doubling to 30 s, reset
// once a tunnel has stayed up); each endpoint is tried through each connection path in order; a
// GOAWAY from a home node (it is about to stop) makes the gateway dial a replacement at once while
// streams on the old tunnel finish. With `connections` > 1 each tunnel prefers a different endpoint,
// so every home node of a cluster has a way to the gateway.
#include "gateway/session_manager.h"
#include "transport/http_client.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace lifeline::gateway {

struct TunnelClientOptions {
  std::vector<std::string> endpoints;             // tls://home:9458, wss://home:9458/tunnel
  std::vector<transport::ProxySettings> paths;    // direct, HTTP proxy, SOCKS5, in order of preference
  std::string ca_file, cert_file, key_file;       // the home CA; the gateway's certificate and key
  int connections = 1;
  std::chrono::milliseconds ping_interval{20000};
  std::chrono::milliseconds backoff_min{500};
  std::chrono::milliseconds backoff_max{30000};
  std::chrono::milliseconds connect_timeout{10000};
  std::chrono::milliseconds device_connect_timeout{10000};
  std::chrono::seconds stream_idle_timeout{0};  // 0: sessions' own idle timeout decides
  std::int64_t max_streams = 10000;
  int io_threads = 1;
};

/// Where a session's stream goes, as the registry says (serial, app) → (host, port).
struct TunnelServices {
  SessionManager* sessions = nullptr;
  std::function<std::string()> devices_json;  // GET /v1/devices: managed devices and their reachability
};

struct TunnelStatus {
  std::string endpoint;
  std::string path;      // "direct", "HTTP proxy 10.0.0.1:3128"
  bool connected = false;
  std::string since;     // RFC 3339
  std::string last_error;
  std::size_t active_streams = 0;
};

class TunnelClient {
 public:
  [[nodiscard]] static std::unique_ptr<TunnelClient> Start(TunnelClientOptions options, TunnelServices services);
  ~TunnelClient();
  TunnelClient(const TunnelClient&) = delete;
  TunnelClient& operator=(const TunnelClient&) = delete;

  std::vector<TunnelStatus> Status() const;
  /// Closes the tunnels and stops dialling.
  void Stop();

  struct Impl;

 private:
  explicit TunnelClient(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace lifeline::gateway
