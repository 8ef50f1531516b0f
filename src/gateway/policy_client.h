#pragma once
// The gateway's client of the policy manager's gateway API (docs/policy.md, "Gateway API"): HTTPS
// with the gateway's enrolled certificate (mutual TLS).
//
// Two threads, each with its own libcurl handle:
//   - the watcher long-polls GET /v1/gateway/watch: a newer policy set is compiled and cached (an
//     invalid one is logged and ignored), every answer updates synced_ms, approval decisions go to
//     the session manager and the decision cursor is kept in the cache; after a failure it waits
//     1-2 s (jittered) and asks again;
//   - the sender posts approval requests (retried until each request's deadline) and delivers the
//     cache's audit outbox in batches of up to 1,000, oldest first, until it is empty (retried with
//     a jittered backoff up to 30 s; records stay in the outbox until the policy manager took them).
#include "gateway/policy_cache.h"
#include "gateway/session_manager.h"
#include "transport/http_client.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace lifeline::gateway {

struct PolicyClientOptions {
  std::string url;           // https://policy.example:8443 (no trailing path)
  transport::ClientTls tls;  // the policy manager's CA; the gateway's certificate and key
  std::chrono::seconds watch_wait{20};  // wait_s of each long poll (the server caps it at 25)
  std::chrono::milliseconds retry_min{1000};  // the watcher's pause after a failure: min..max, jittered
  std::chrono::milliseconds retry_max{2000};
  std::chrono::milliseconds send_backoff_max{30000};
  std::chrono::milliseconds connect_timeout{5000};
  std::size_t audit_batch = 1000;
};

/// What the policy client reports for `lifeline gateway status`-style output and tests.
struct PolicyClientStatus {
  bool reachable = false;  // the last watch got an answer
  std::string last_error;
  std::uint64_t watches_answered = 0;
  std::uint64_t records_delivered = 0;
  std::uint64_t requests_posted = 0;
};

class PolicyClient {
 public:
  /// Starts both threads. `cache` must outlive the client; `on_decision` is called on the watcher
  /// thread (SessionManager::OnApprovalOutcome).
  [[nodiscard]] static std::unique_ptr<PolicyClient> Start(PolicyClientOptions options, PolicyCache& cache,
                                                           std::function<void(const ApprovalOutcome&)> on_decision,
                                                           const Clock& clock = SystemClock::Instance());
  ~PolicyClient();
  PolicyClient(const PolicyClient&) = delete;
  PolicyClient& operator=(const PolicyClient&) = delete;

  /// Asks the policy manager now (a quick watch, cutting a long poll short within about a second), so
  /// synced_ms passes a device deployed just now. Returns at once.
  void SyncNow();
  /// Queues an approval request for the sender; returns at once.
  void RequestApproval(const ApprovalRequest& request);
  PolicyClientStatus Status() const;
  /// Stops both threads, within about a second: requests in flight are aborted (ClientRequest::abort),
  /// so a long poll does not hold the stop for its wait_s. Idempotent.
  void Stop();

  struct Impl;

 private:
  explicit PolicyClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// The system's CA bundle (Debian, RHEL, Alpine paths), for a policy.ca_file left empty; "" if none.
std::string SystemCaBundle();

}  // namespace lifeline::gateway
