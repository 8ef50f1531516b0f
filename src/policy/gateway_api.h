#pragma once
// The policy manager's gateway API (docs/policy.md "Gateway API (client certificates)"): gateways
// authenticate with the client certificate the home issued them, never with a bearer token.
//
//   GET  /v1/gateway/watch?policy_version=V&cursor=C&wait_s=W   long poll: newer policy, decisions
//   POST /v1/gateway/audit {"records": [...]}                   the gateway's audit outbox, idempotent
//   POST /v1/gateway/requests                                   approvals (policy/approvals.*, which
//                                                               calls AuthenticateGateway itself)
#include "policy/audit_log.h"
#include "policy/change_feed.h"
#include "transport/https_server.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace lifeline::policy {

class PolicyServer;
class PolicySets;

/// Who may use the gateway API beyond holding a certificate of the gateways' CA.
struct GatewayAccess {
  /// "customer/site" pairs ([gateways] sites); empty: every site the CA certifies.
  std::vector<std::string> sites;
};

/// The outcome of AuthenticateGateway: the gateway's name, or the answer to send instead.
struct GatewayAuth {
  std::string gateway;                            // "customer/site/name" when accepted
  std::optional<transport::HttpResponse> refusal;  // set when refused: return it as it is
  explicit operator bool() const { return !refusal.has_value(); }
};

/// Checks the caller of a /v1/gateway/ route: a client certificate that verified against
/// tls.client_ca_file during the handshake (request.peer), carrying a Lifeline gateway identity of an
/// allowed site. No certificate: 401. A device certificate, one without a Lifeline identity, or a
/// site not in `access.sites`: 403 {"error": "forbidden"} and nothing more (the caller learns
/// nothing about why). An Authorization header plays no part: a bearer token never authenticates a
/// gateway. Refusals are logged with the remote address.
[[nodiscard]] GatewayAuth AuthenticateGateway(const transport::HttpRequest& request, const GatewayAccess& access);

/// One decided approval request, as the watch reports it to the gateway that asked.
struct DecisionEvent {
  std::string request_id, state, decided_by, comment;
  std::int64_t decided_ms = 0;
  std::int64_t seq = 0;
};
// Decisions (approved/denied/expired) of `gateway`'s requests with seq > cursor, oldest first, at most `limit`.
using DecisionSource =
    std::function<std::vector<DecisionEvent>(const std::string& gateway, std::int64_t cursor, std::size_t limit)>;

/// At most this many records per POST /v1/gateway/audit.
inline constexpr std::size_t kMaxGatewayAuditRecords = 1000;
/// At most this many decisions per watch answer (the gateway asks again with the new cursor).
inline constexpr std::size_t kMaxWatchDecisions = 500;
/// wait_s bounds and default.
inline constexpr int kMaxWatchWaitSeconds = 25;
inline constexpr int kDefaultWatchWaitSeconds = 20;

/// The watch and audit routes. Thread-safe: handlers run on the HTTPS server's workers, and each
/// watching gateway holds one worker for up to wait_s.
class GatewayApi {
 public:
  /// All references must outlive the API (and the server it is registered with).
  GatewayApi(PolicySets& sets, AuditLog& audit, ChangeFeed& feed, GatewayAccess access);

  /// Registers GET /v1/gateway/watch and POST /v1/gateway/audit with `server` (RoutePublic: the
  /// handlers authenticate with AuthenticateGateway).
  void Register(PolicyServer& server);

  /// Where the watch reads decisions from (the approvals part). Until set, no decisions are
  /// reported. May be called at any time; a watch in progress picks it up at its next wake-up.
  void SetDecisionSource(DecisionSource source);

  const GatewayAccess& access() const { return access_; }

  transport::HttpResponse Watch(const transport::HttpRequest& request);
  transport::HttpResponse Audit(const transport::HttpRequest& request);

 private:
  std::vector<DecisionEvent> Decisions(const std::string& gateway, std::int64_t cursor);

  PolicySets& sets_;
  AuditLog& audit_;
  ChangeFeed& feed_;
  const GatewayAccess access_;
  std::mutex source_mutex_;
  DecisionSource source_;
};

}  // namespace lifeline::policy
