#pragma once
// The policy manager's HTTPS API base: login, bearer-token authentication, role checks and a route
// table the other parts (/v1/policies, /v1/requests, /v1/audit) register into.
//
// Built-in routes:
//   POST /v1/login   {"user": "...", "password": "..."} -> {"token", "user", "role", "expires"}
//                    401 wrong name or password, 429 locked (Retry-After is not given: the lockout
//                    length is configuration an attacker need not learn)
//   POST /v1/logout  revokes the session token the request carries
//   GET  /v1/whoami  {"name", "role", "via": "session"|"api"}
// Errors are JSON {"error": "...", "message": "..."}; a 403 also names "needed_role".
#include "common/result.h"
#include "policy/approvals.h"
#include "policy/audit_log.h"
#include "policy/change_feed.h"
#include "policy/gateway_api.h"
#include "policy/peer_changes.h"
#include "policy/policy_config.h"
#include "policy/policy_database.h"
#include "policy/policy_sets.h"
#include "policy/policy_store.h"
#include "policy/policy_users.h"
#include "transport/https_server.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <semaphore>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

namespace lifeline::policy {

/// A handler for an authenticated request. Runs on a worker thread; may block; must be thread-safe.
using RouteHandler = std::function<transport::HttpResponse(const transport::HttpRequest&, const Caller&)>;
/// A handler that does its own authentication (gateways with client certificates: request.peer).
using PublicHandler = std::function<transport::HttpResponse(const transport::HttpRequest&)>;

/// {"error": error, "message": message} with `status`.
transport::HttpResponse JsonError(int status, std::string_view error, std::string_view message);

class PolicyServer {
 public:
  /// `users` must outlive the server.
  explicit PolicyServer(PolicyUsers& users);
  ~PolicyServer();
  PolicyServer(const PolicyServer&) = delete;
  PolicyServer& operator=(const PolicyServer&) = delete;

  /// Serves `method` on `prefix` and every path below it ("/v1/requests" matches "/v1/requests" and
  /// "/v1/requests/42", not "/v1/requestsx") to callers whose role is at least `min_role`; others
  /// get 403 naming the role needed, requests without a valid token 401. The longest matching prefix
  /// wins. May be called before or after Start.
  void Route(std::string method, std::string prefix, Role min_role, RouteHandler handler);
  /// The same without token authentication: the handler decides.
  void RoutePublic(std::string method, std::string prefix, PublicHandler handler);

  /// Starts listening with `options` (listen, TLS files, client certificate policy); errors as
  /// transport::HttpsServer::Start.
  [[nodiscard]] VoidResult Start(transport::ServerOptions options);
  /// A second listener serving the same routes over plain HTTP (options.plain_http is forced on, so
  /// a loopback listen address is required). Requests carry no peer certificate there, so the
  /// gateways' routes answer 401. Errors as transport::HttpsServer::Start.
  [[nodiscard]] VoidResult StartPlainHttp(transport::ServerOptions options);
  /// Stops serving on both listeners (see HttpsServer::Stop). Idempotent.
  void Stop(std::chrono::milliseconds grace = std::chrono::seconds(2));
  std::uint16_t LocalPort() const;
  std::string LocalAddress() const;
  /// The plain HTTP listener's address; empty when it was not started.
  std::string PlainHttpAddress() const;

  /// Answers one request (what the HTTPS server calls; public for tests without sockets).
  transport::HttpResponse Handle(const transport::HttpRequest& request);

 private:
  struct Entry {
    std::string method;
    std::string prefix;
    Role min_role = Role::kAdmin;
    RouteHandler handler;  // set for authenticated routes
    PublicHandler public_handler;  // set for public ones
  };
  transport::HttpResponse Login(const transport::HttpRequest& request);

  PolicyUsers& users_;
  // Argon2id takes 64 MiB per login: at most this many at once, however many workers serve.
  std::counting_semaphore<> login_slots_{4};
  mutable std::shared_mutex routes_mutex_;
  std::vector<Entry> routes_;
  std::unique_ptr<transport::HttpsServer> server_;
  std::unique_ptr<transport::HttpsServer> plain_server_;
};

/// The whole `lifeline policy run` service: store, users, policy sets, audit log, the gateway API
/// and the HTTPS server. Other parts add their routes to server() after Start, wake the gateways'
/// watches with feed().Notify() after committing a change, and give the watch its decisions with
/// SetDecisionSource.
class PolicyService {
 public:
  /// Opens the store and starts the HTTPS API, and with listen.http set the same API over plain HTTP
  /// on that (loopback) address.
  [[nodiscard]] static Result<std::unique_ptr<PolicyService>> Start(const PolicyConfig& config,
                                                                    const Clock& clock = SystemClock::Instance());
  ~PolicyService();
  /// Releases every long poll (feed().Stop()), then stops both listeners. Idempotent.
  void Stop();

  PolicyServer& server() { return *server_; }
  PolicyUsers& users() { return *users_; }
  PolicyStore& store() { return *store_; }
  /// The tamper-evident audit log (data_dir/audit.db or the PostgreSQL store, signed with
  /// data_dir/audit-sign.key).
  AuditLog& audit() { return *audit_; }
  /// The versioned policy sets (GET/PUT /v1/policies).
  PolicySets& policies() { return *policies_; }
  /// Wakes the gateways' watches: call Notify() after committing a change they should see (a request
  /// decided or expired).
  ChangeFeed& feed() { return feed_; }
  /// Where GET /v1/gateway/watch reads the decisions of each gateway's requests (the approvals part,
  /// after Start). Until called, watches report no decisions. Thread-safe.
  void SetDecisionSource(DecisionSource source) { gateway_api_->SetDecisionSource(std::move(source)); }
  /// The [gateways] access rules, for other /v1/gateway/ routes: AuthenticateGateway(request, ...).
  const GatewayAccess& gateway_access() const { return gateway_api_->access(); }
  /// Approval requests: /v1/requests, POST /v1/gateway/requests, their expiry and emails.
  Approvals& approvals() { return *approvals_; }

 private:
  PolicyService() = default;
  // Declared before what uses it; destroyed after the server that runs the watches is stopped.
  ChangeFeed feed_;
  std::unique_ptr<PolicyStore> store_;
  std::unique_ptr<AuditLog> audit_;
  std::unique_ptr<PolicySets> policies_;
  std::unique_ptr<GatewayApi> gateway_api_;
  std::unique_ptr<PolicyUsers> users_;
  std::unique_ptr<Approvals> approvals_;  // its handlers run on server_: destroyed after it stops
  std::unique_ptr<PolicyServer> server_;
  // PostgreSQL only: the other policy managers' policy changes and decisions wake this one's
  // watches. Declared last: stopped first, before what it reads and wakes goes away.
  std::unique_ptr<PeerChanges> peer_changes_;
};

/// UsersOptions from policy.toml's [login] and [sessions].
UsersOptions MakeUsersOptions(const PolicyConfig& config);
/// The audit log's files in data_dir (audit.db, audit-sign.key), as the service and the CLI open it;
/// on PostgreSQL the caller sets `db` to the store's pool (PolicyDatabases::audit).
AuditLog::Options AuditLogOptions(const PolicyConfig& config, const Clock& clock = SystemClock::Instance());
/// A sink that appends each security event (logins, lockouts, user and token changes) to `audit` as
/// a `login` or `admin_action` record. `audit` must outlive the sink.
SecurityEventSink AuditSecurityEvents(AuditLog& audit);
/// The users and tokens store on the databases policy.toml names (OpenPolicyDatabases).
[[nodiscard]] Result<std::unique_ptr<PolicyStore>> OpenPolicyStore(const PolicyDatabases& databases);

}  // namespace lifeline::policy
