#pragma once
// The agent-facing endpoints of the home (docs/protocol.md):
//   POST /v1/batches  sealed, signed batch -> per-message answers (mutual TLS required)
//   POST /v1/enroll   enrollment token + CSR -> device certificate (server-authenticated TLS only)
//   GET  /v1/tickets  the device's own tickets and their status, signed (mutual TLS required)
//   GET  /v1/time     the home's clock, signed (for `lifeline check`)
// Every refusal is one log line and an error body with its wire name; a refused batch stores nothing.
#include "common/clock.h"
#include "crypto/keys.h"
#include "protocol/errors.h"
#include "protocol/message.h"
#include "store/home_store.h"
#include "transport/https_server.h"

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <utility>
#include <string>
#include <vector>

namespace lifeline::home {

struct IngestSettings {
  std::chrono::seconds max_clock_skew{300};
  protocol::Severity ticket_min_severity = protocol::Severity::kError;
  std::vector<std::string> email_contacts;
  /// Outbox rows for ticket events (routing, contact groups); empty: only `email_contacts`.
  store::NotifyPlanner planner;
  /// Deduplication key of an alert; empty: device and alert code.
  store::DedupKeyFunction dedup_key;
  /// A resolved ticket whose alert comes back within this long is reopened.
  std::chrono::seconds reopen_window{0};
  store::StormSettings storm;
  int certificate_days = 365;
  /// When false, a batch without a TLS client certificate (e.g. through a TLS-inspecting proxy) is
  /// accepted if its sealed envelope's signature verifies with the enrolled device's key.
  bool require_client_certificate = true;
};

/// Keys the home needs to take batches and enroll devices (loaded from the PKI directory).
struct HomeKeys {
  crypto::SealingKeyPair seal;   // batches are sealed to this
  crypto::SigningKeyPair sign;   // replies are signed with this
  std::string ca_cert_pem;       // issues device certificates
  std::string ca_key_pem;
};

/// Counts of what the handler did, for logs and tests.
struct IngestCounters {
  std::atomic<std::int64_t> batches_accepted{0};
  std::atomic<std::int64_t> batches_refused{0};
  std::atomic<std::int64_t> enrollments{0};
  std::atomic<std::int64_t> ticket_status_requests{0};
};

class IngestHandler {
 public:
  /// `on_committed` runs after a batch committed new outbox rows (wakes the notifier).
  IngestHandler(store::HomeStore& store, HomeKeys keys, IngestSettings settings, const Clock& clock,
                std::function<void()> on_committed);

  transport::HttpResponse Handle(const transport::HttpRequest& request);
  const IngestCounters& counters() const { return counters_; }
  /// Runs after each committed batch with the time the store recorded it at (the missing-heartbeat
  /// monitor). Set before the server starts.
  using BatchObserver =
      std::function<void(const protocol::Batch&, const protocol::BatchReply&, std::int64_t now_ms)>;
  void SetBatchObserver(BatchObserver observer) { batch_observer_ = std::move(observer); }

 private:
  /// The device a request speaks for: the TLS client certificate's, or the one a gateway of the
  /// device's customer and site relayed (docs/protocol.md, "Relay through a gateway").
  struct DevicePeer {
    std::optional<protocol::DeviceIdentity> identity;  // none: no client certificate
    std::string name;                                  // for log lines
    std::optional<std::int64_t> relay_received_at_ms;  // a gateway held the batch since then
  };
  /// A refusal (reason, detail) when the request names its device wrongly, else fills `out`.
  std::optional<std::pair<protocol::Reject, std::string>> ResolveDevicePeer(const transport::HttpRequest& request,
                                                                           DevicePeer* out) const;
  /// For a request a gateway passes on: a refusal unless the TLS peer is an enrolled, unrevoked
  /// gateway; else its identity in `gateway`.
  std::optional<std::pair<protocol::Reject, std::string>> CheckRelayingGateway(const transport::HttpRequest& request,
                                                                              protocol::DeviceIdentity* gateway) const;
  transport::HttpResponse HandleBatch(const transport::HttpRequest& request);
  transport::HttpResponse HandleEnroll(const transport::HttpRequest& request);
  transport::HttpResponse HandleDeviceTickets(const transport::HttpRequest& request);
  transport::HttpResponse SignedJson(std::string body) const;

  store::HomeStore& store_;
  HomeKeys keys_;
  IngestSettings settings_;
  const Clock& clock_;
  std::function<void()> on_committed_;
  IngestCounters counters_;
  BatchObserver batch_observer_;
};

/// Response for a refusal: the reason's HTTP status and {"error","message"} body.
transport::HttpResponse ErrorResponse(protocol::Reject reason, std::string_view message);

}  // namespace lifeline::home
