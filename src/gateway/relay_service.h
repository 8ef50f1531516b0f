#pragma once
// The relay (docs/gateway.md, "Relay"): the site's agents send to the gateway as they would to the
// home. The device-facing HTTPS server (mutual TLS, the gateway's certificate, client certificates
// verified against the home's CA) takes POST /v1/batches, stores each batch durably (RelayQueue) and
// forwards it, sealed and unopened, to the home over the agent's connection paths with the gateway's
// own client certificate and the device's certificate in a header. A device whose batch the home
// answers within relay.wait gets the home's signed reply byte for byte; otherwise it gets 202 (the
// gateway holds the batch) and the gateway keeps forwarding, oldest first, with backoff, across
// restarts. GET /v1/tickets and GET /v1/time are passed through at once (nothing to store).
//
// Threads: the server's I/O and worker threads (a worker waits up to relay.wait per batch) and one
// forwarder thread that talks to the home.
#include "agent/paths_config.h"
#include "common/clock.h"
#include "common/result.h"
#include "protocol/message.h"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

namespace lifeline::gateway {

struct GatewayConfig;

struct RelayOptions {
  protocol::DeviceIdentity gateway;  // the gateway's own identity: it relays for its customer and site only
  std::string listen = "127.0.0.1:0";
  std::filesystem::path queue_path;          // relay.db
  std::int64_t max_queue_bytes = 1LL << 30;  // relay.max_queue_mib
  std::chrono::milliseconds wait{10000};     // relay.wait
  std::chrono::milliseconds request_timeout{30000};
  std::chrono::milliseconds retry_min{1000};  // backoff while the home cannot be reached
  std::chrono::milliseconds retry_max{30000};
  std::chrono::milliseconds refused_retry_max{std::chrono::hours(1)};  // a held batch the home refused
  std::string home_url;
  agent::PathsConfig paths;
  std::filesystem::path ca_cert;       // the home's CA: pins the home, verifies the site's agents
  std::filesystem::path gateway_cert;  // server certificate for agents, client certificate to the home
  std::filesystem::path gateway_key;
  int worker_threads = 32;             // devices waiting for the home at once
  std::size_t max_body_bytes = 1024 * 1024;
  /// Called on the forwarder thread after the home took a batch (the connect-home upload is done):
  /// the gateway records it in the policy manager's audit log. Optional; may block briefly (fsync).
  std::function<void(const std::string& device, std::int64_t received_at_ms, std::size_t bytes,
                     std::int64_t attempts)>
      on_uploaded;
};

/// Counts since Start, for logs and tests.
struct RelayStats {
  std::int64_t received = 0;     // batches stored
  std::int64_t answered = 0;     // devices that got the home's own reply
  std::int64_t held = 0;         // devices answered 202
  std::int64_t forwarded = 0;    // batches the home took (200)
  std::int64_t refused = 0;      // refused at the gateway (wrong device, queue full)
  std::int64_t queue_depth = 0;  // batches held now
};

class RelayService {
 public:
  /// The relay's options from gateway.toml: listen.devices, relay.*, home.*, [[paths]], the PKI files.
  static RelayOptions OptionsFrom(const GatewayConfig& config);
  /// Opens the queue, starts the forwarder and the device-facing server. Errors are logged once.
  [[nodiscard]] static Result<std::unique_ptr<RelayService>> Start(RelayOptions options,
                                                                   const Clock& clock = SystemClock::Instance());
  ~RelayService();
  RelayService(const RelayService&) = delete;
  RelayService& operator=(const RelayService&) = delete;

  /// Stops accepting, answers waiting devices 202 (their batches are on disk), stops the forwarder.
  /// Idempotent.
  void Stop();
  /// The device-facing address with its real port ("127.0.0.1:41234").
  std::string LocalAddress() const;
  RelayStats Stats() const;

  class Impl;

 private:
  explicit RelayService(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace lifeline::gateway
