#pragma once
// Approval requests (docs/policy.md "Approvals API"): a gateway asks when a rule says Ask for
// Approval, an approver approves or denies, or the request expires at its deadline. The policy
// manager keeps every request durably, emails the approvers, records each step in the audit log and
// wakes the asking gateway's watch.
//
//   GET  /v1/requests[?state=pending|approved|denied|expired]   (auditor)  {"requests": [...]}
//   GET  /v1/requests/{id}                                      (auditor)  the request
//   POST /v1/requests/{id}/approve | /deny  {"comment": "..."}  (approver) the request; 403 own_request,
//                                                                          409 not_pending, 404
//   POST /v1/gateway/requests                                   (gateway certificate) 201 / 200 on a retry
//
// States: pending -> approved | denied | expired, nothing else. Each decision (expiry included) takes
// the next decision sequence number (1, 2, 3, ... over all gateways); the watch reports a gateway's
// decisions above its cursor in that order (DecisionSource).
//
// Storage: table `approval_requests` in the policy manager's store (policy_database.h: SQLite
// data_dir/policy.db, or the PostgreSQL database), created with CREATE TABLE IF NOT EXISTS like
// policy_versions (policy_sets.h). Every change is one transaction under lock_key::kApprovals, so
// policy managers sharing one PostgreSQL database hand out each decision sequence number once.
#include "common/clock.h"
#include "common/result.h"
#include "policy/gateway_api.h"
#include "transport/https_server.h"
#include "transport/mailer.h"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace lifeline::store::sql {
class Database;
class Session;
}

namespace lifeline::policy {

class AuditLog;
class ChangeFeed;
class PolicyServer;

/// Audit record kinds of the approvals (source "policy", except a request's: the gateway's name).
namespace audit_kind {
inline constexpr std::string_view kApprovalRequest = "approval_request";
inline constexpr std::string_view kApprovalDecision = "approval_decision";
inline constexpr std::string_view kApprovalExpired = "approval_expired";
}  // namespace audit_kind

enum class RequestState { kPending, kApproved, kDenied, kExpired };
std::string_view WireName(RequestState state);
std::optional<RequestState> ParseRequestState(std::string_view name);

struct ApprovalRequest {
  std::string id;       // the gateway's request id: 32 lowercase hex (its session id)
  std::string gateway;  // "customer/site/name"
  std::string engineer;
  std::string device;  // serial
  std::string model;
  std::string activity;     // WireName(Activity)
  std::string application;  // remote sessions only; "" otherwise
  std::string reason;
  std::string service_request;
  std::int64_t rule_id = 0;
  std::int64_t timeout_s = 0;
  std::int64_t requested_ms = 0;  // when the gateway asked (its clock)
  std::int64_t received_ms = 0;   // when the policy manager stored it (its clock)
  std::int64_t expires_ms = 0;    // received_ms + timeout_s
  RequestState state = RequestState::kPending;
  std::string decided_by;  // the approver; "" while pending and for an expiry
  std::optional<std::int64_t> decided_ms;
  std::string comment;
  std::optional<std::int64_t> decision_seq;  // set with the decision
};

/// The request as the API shows it (docs/policy.md "Approvals API").
std::string ApprovalRequestJson(const ApprovalRequest& request);

/// What a gateway sends (POST /v1/gateway/requests), checked: DecodeNewRequest refuses what would
/// not make a sound request (names empty or with control characters, an unknown activity, a timeout
/// out of kMinAskTimeout..kMaxAskTimeout, ...).
struct NewApprovalRequest {
  std::string id;
  std::string engineer, device, model, activity, application, reason, service_request;
  std::int64_t rule_id = 0;
  std::int64_t timeout_s = 0;
  std::int64_t requested_ms = 0;
};
/// nullopt with `*problem` naming the field when the body is not a valid request.
std::optional<NewApprovalRequest> DecodeNewRequest(std::string_view body, std::string* problem);

struct ApprovalsOptions {
  std::filesystem::path db_path;         // the policy manager's SQLite file, when `db` is not given
  std::shared_ptr<store::sql::Database> db;  // the store's database (either backend)
  std::vector<std::string> notify;       // [approvals] notify: who gets an email per request
  std::string api_url;                   // [approvals] url: named in the email's commands ("" none)
  std::chrono::seconds mail_retry_min{10};  // first retry of a failed email; doubles up to max
  std::chrono::seconds mail_retry_max{300};
  const Clock* clock = &SystemClock::Instance();
};

class Approvals {
 public:
  /// Opens the table in `options.db_path`, then starts the expiry thread and (with `notify`
  /// addresses) the mail thread: requests already overdue expire at once, pending ones not yet
  /// emailed are emailed. `audit` and `feed` must outlive this; `mailer` may be null when nobody is
  /// notified.
  [[nodiscard]] static Result<std::unique_ptr<Approvals>> Open(ApprovalsOptions options, AuditLog& audit,
                                                               ChangeFeed& feed,
                                                               std::unique_ptr<transport::Mailer> mailer);
  ~Approvals();
  Approvals(const Approvals&) = delete;
  Approvals& operator=(const Approvals&) = delete;

  /// Stops the expiry and mail threads (an email being sent finishes first, within the SMTP
  /// timeout). The store stays usable; nothing expires by itself after this. Idempotent.
  void Stop();

  enum class AddStatus { kCreated, kExisting, kIdTaken };
  struct AddOutcome {
    AddStatus status = AddStatus::kCreated;
    ApprovalRequest request;  // kCreated, kExisting: as stored
  };
  /// Stores `request` of `gateway` as pending until now + timeout_s. The same gateway sending the same
  /// id again gets the stored request back (kExisting, nothing changes); another gateway's id is
  /// kIdTaken. A new request is audited, emailed (from the mail thread) and scheduled to expire.
  [[nodiscard]] Result<AddOutcome> Add(const std::string& gateway, const NewApprovalRequest& request);

  enum class DecideStatus { kDecided, kNotFound, kOwnRequest, kNotPending };
  struct DecideOutcome {
    DecideStatus status = DecideStatus::kDecided;
    ApprovalRequest request;  // all but kNotFound: the request as it now stands
  };
  /// Approves or denies request `id` for `approver`. kOwnRequest when the approver is the request's
  /// engineer (compared case-insensitively); kNotPending when decided or expired already (a request
  /// past its deadline that the expiry thread has not reached yet expires here). A decision is
  /// audited and wakes the watches.
  [[nodiscard]] Result<DecideOutcome> Decide(std::string_view id, bool approve, std::string_view approver,
                                             std::string_view comment);

  [[nodiscard]] Result<std::optional<ApprovalRequest>> Find(std::string_view id);
  /// Requests (in `state` when given), newest first, at most `limit`.
  [[nodiscard]] Result<std::vector<ApprovalRequest>> List(std::optional<RequestState> state, std::size_t limit);
  /// Decisions of `gateway`'s requests with a decision sequence above `cursor`, oldest first.
  [[nodiscard]] Result<std::vector<DecisionEvent>> Decisions(const std::string& gateway, std::int64_t cursor,
                                                             std::size_t limit);
  /// Decisions() for the gateways' watch (PolicyService::SetDecisionSource); a store failure is
  /// logged and reported as no decisions.
  DecisionSource MakeDecisionSource();

  /// Expires every pending request whose deadline has passed; returns how many it expired. The
  /// expiry thread calls it at each deadline.
  [[nodiscard]] Result<std::size_t> ExpireDue();

  /// Registers the routes above: /v1/requests with `server`'s token roles, /v1/gateway/requests with
  /// AuthenticateGateway against `access`. `access` must outlive the server.
  void Register(PolicyServer& server, const GatewayAccess& access);

  /// Emails sent so far (for tests and the log).
  std::int64_t emails_sent() const;

 private:
  /// Find on `session` (also inside a transaction).
  [[nodiscard]] static Result<std::optional<ApprovalRequest>> FindOn(store::sql::Session& session,
                                                                    std::string_view id);
  Approvals(std::shared_ptr<store::sql::Database> db, ApprovalsOptions options, AuditLog& audit,
            ChangeFeed& feed, std::unique_ptr<transport::Mailer> mailer);
  void StartThreads();
  void ExpiryLoop();
  void MailLoop();
  void QueueEmail(const std::string& id);
  void AuditDecision(const ApprovalRequest& request);
  [[nodiscard]] Result<std::optional<std::int64_t>> NextExpiry();
  [[nodiscard]] Result<std::vector<std::string>> PendingNotEmailed();
  [[nodiscard]] VoidResult MarkEmailed(const std::string& id, std::int64_t at_ms);

  transport::HttpResponse HandleGet(const transport::HttpRequest& request);
  transport::HttpResponse HandleDecide(const transport::HttpRequest& request, std::string_view caller);
  transport::HttpResponse HandleGatewayPost(const transport::HttpRequest& request, const GatewayAccess& access);

  std::shared_ptr<store::sql::Database> db_;
  ApprovalsOptions options_;
  const Clock& clock_;
  AuditLog& audit_;
  ChangeFeed& feed_;
  std::unique_ptr<transport::Mailer> mailer_;

  // The threads' shared state: a stop flag, a wake-up for the expiry thread (a new, possibly earlier
  // deadline) and the emails waiting for their next attempt.
  struct MailAttempt {
    int failures = 0;
    std::chrono::steady_clock::time_point next;
  };
  mutable std::mutex thread_mutex_;
  std::condition_variable expiry_wake_;
  std::condition_variable mail_wake_;
  bool stopping_ = false;
  bool expiry_changed_ = false;
  std::map<std::string, MailAttempt> mail_queue_;
  std::int64_t emails_sent_ = 0;
  std::thread expiry_thread_;
  std::thread mail_thread_;
};

}  // namespace lifeline::policy
