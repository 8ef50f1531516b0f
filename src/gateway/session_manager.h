#pragma once
// Remote sessions at the gateway: the customer's side of every engineer session. The home asks for
// a session to a device's application (never an address); the gateway decides, maps the pair to the
// registered address and port, enforces the time limit and idle timeout, lets the customer list and
// end sessions or switch remote access off, and keeps one audit record per session (engineer,
// reason, device, application, start, end, bytes each way, outcome) in sessions.db.
//
// Policy (docs/gateway.md, "Policy"): every new session is decided from the policy cache
// (policy_cache.h): allowed, refused, or held "pending approval" until the policy manager's approver
// decides or the deadline passes. Every decision, request, outcome, session start and end, kill and
// remote-access switch goes into the cache's audit outbox before it takes effect.
//
// No Asio or HTTP here: the tunnel code (tunnel_client.cpp) reports streams starting and ending and
// gives each stream's live byte counters and a way to end it; the policy client (policy_client.h)
// posts approval requests handed to it and reports decisions back; a timer calls Sweep() once a
// second.
#include "common/clock.h"
#include "common/result.h"
#include "gateway/policy_cache.h"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace lifeline::store::sqlite {
class Database;
}

namespace lifeline::gateway {

/// Where a device's application is: the registered address and port; and what the policy decides
/// on: the device's model and when it was deployed (Unix ms).
struct SessionTarget {
  std::string host;
  std::uint16_t port = 0;
  std::string model;
  std::int64_t deployed_ms = 0;
};

/// Who decides sessions ([policy] in gateway.toml).
enum class PolicyMode {
  kNone,      // no policy manager configured: every session is refused
  kDisabled,  // [policy] disabled = true: every session is allowed (warned, audited)
  kManaged,   // the policy manager's policy set, from the cache
};

/// An approval request for the policy manager (POST /v1/gateway/requests); the session's id is its id.
struct ApprovalRequest {
  std::string request_id;
  std::string engineer, device, model, application, reason, service_request;
  std::int64_t rule_id = 0;
  std::int64_t timeout_s = 0;
  std::int64_t requested_ms = 0;
  std::int64_t deadline_ms = 0;  // the gateway's own deadline: after it, posting is pointless
};

/// An approver's decision (or the request's expiry) as the policy manager's watch reports it.
struct ApprovalOutcome {
  std::string request_id;
  std::string state;  // "approved", "denied", "expired"
  std::string decided_by;
  std::string comment;
  std::int64_t decided_ms = 0;
};

struct SessionPolicy {
  PolicyMode mode = PolicyMode::kNone;
  /// The audit outbox (every mode; without it nothing is audited) and, for kManaged, the policy
  /// set and synced_ms. Must outlive the session manager.
  PolicyCache* cache = nullptr;
  /// kManaged: hands an approval request to the policy client (returns at once; it retries).
  std::function<void(const ApprovalRequest&)> request_approval;
};

/// Maps (serial, application) to its registered target; on refusal returns nullopt and says why
/// ("device 'X' is not managed by this gateway", "application 'telnet' is not registered for ...").
using TargetLookup =
    std::function<std::optional<SessionTarget>(const std::string& serial, const std::string& app, std::string* why)>;

struct SessionSettings {
  bool remote_access_enabled = true;  // the config's default; `gateway remote-access off` overrides it
  std::chrono::seconds max_duration = std::chrono::hours(8);
  std::chrono::seconds idle_timeout = std::chrono::minutes(30);
  SessionPolicy policy;
};

struct SessionRequest {
  std::string engineer;  // as the home authenticated them
  std::string reason;    // "SR-1234: disk replacement"
  std::string device;    // serial, within the gateway's site
  std::string app;       // "ssh"
  std::string home;      // which home node asked (for the audit record)
  std::string service_request;  // optional: the engineer's service request number, for approvers
};

struct SessionRecord {
  std::string id;  // 32 hex characters
  std::string engineer, reason, device, app, target, home;
  std::int64_t started_ms = 0;
  std::int64_t ended_ms = 0;  // 0 while open
  std::int64_t expires_ms = 0;
  std::int64_t idle_timeout_s = 0;
  std::uint64_t bytes_to_device = 0;
  std::uint64_t bytes_from_device = 0;
  std::int64_t streams = 0;         // connections made in this session
  std::int64_t open_streams = 0;    // now (not stored)
  std::string outcome;              // "open", "pending approval", "ended by engineer", "time limit", ...
  std::string service_request;
  std::string policy_reason;        // why the policy allowed, asked or refused ("rule 7 (...): Ask for Approval")
  std::int64_t rule_id = 0;         // the rule that decided; 0 when none
  std::int64_t approval_expires_ms = 0;  // set while (and after) the session waited for approval
  bool Open() const { return ended_ms == 0; }
  bool Pending() const { return ended_ms == 0 && outcome == kPendingApproval; }
  static constexpr const char* kPendingApproval = "pending approval";
};

/// A decision on a session or stream request: allowed, or an HTTP status and reason for the home.
/// Create answers 201 (open) or 202 (allowed to wait for approval: session.outcome is "pending
/// approval"); AuthorizeStream 200, or 409 while the session waits for approval.
struct SessionDecision {
  bool allowed = false;
  int status = 200;
  std::string reason;
  SessionRecord session;
  SessionTarget target;  // AuthorizeStream: where to connect
};

/// A live stream of a session, as the tunnel code sees it.
struct StreamControl {
  std::function<std::pair<std::uint64_t, std::uint64_t>()> bytes;  // (to device, from device) so far
  std::function<void()> end;                                        // resets the stream; any thread
};

/// A session record as a JSON object (serialised): what the home and the admin interface show.
std::string SessionJson(const SessionRecord& record);

class SessionManager {
 public:
  [[nodiscard]] static Result<std::unique_ptr<SessionManager>> Open(const std::filesystem::path& db_path,
                                                                    SessionSettings settings, TargetLookup lookup,
                                                                    const Clock& clock = SystemClock::Instance());
  ~SessionManager();

  /// Decides a new session. Refusals are audited too (outcome "refused: ...").
  SessionDecision Create(const SessionRequest& request);
  /// The policy manager decided an approval request (request id = session id): opens the pending
  /// session or ends it. Unknown or no longer pending sessions are ignored.
  void OnApprovalOutcome(const ApprovalOutcome& outcome);
  /// Decides one connection of an open session and says where to connect.
  SessionDecision AuthorizeStream(const std::string& session_id);
  /// A stream of `session_id` is connected to the device; returns its token for StreamEnded.
  std::uint64_t StreamStarted(const std::string& session_id, StreamControl control);
  void StreamEnded(const std::string& session_id, std::uint64_t token, std::uint64_t to_device,
                   std::uint64_t from_device);

  /// The engineer (through the home) ended the session.
  Result<SessionRecord> EndByEngineer(const std::string& session_id);
  /// The customer ended it at the gateway.
  Result<SessionRecord> Kill(const std::string& session_id, const std::string& who);
  /// Switches remote access on or off (persisted; off ends every open session).
  void SetRemoteAccess(bool enabled, const std::string& who);
  bool RemoteAccessEnabled() const;

  /// Ends sessions past their time limit, idle too long or past their approval deadline. Call about
  /// once a second.
  void Sweep();

  /// Open sessions, or the latest `limit` records of all when `include_ended`.
  std::vector<SessionRecord> List(bool include_ended, std::size_t limit = 200) const;
  std::optional<SessionRecord> Find(const std::string& session_id) const;

 private:
  struct Live;
  SessionManager(std::unique_ptr<store::sqlite::Database> db, SessionSettings settings, TargetLookup lookup,
                 const Clock& clock);
  using LiveMap = std::map<std::string, std::unique_ptr<Live>>;
  /// Ends the open session at `it` and erases it; returns its record.
  SessionRecord EndLocked(LiveMap::iterator it, const std::string& outcome,
                          std::vector<std::function<void()>>* enders);
  void OpenLocked(Live& live, std::int64_t now);
  void SaveLocked(const SessionRecord& record);
  void Refuse(const SessionRequest& request, int status, const std::string& reason, SessionDecision* decision,
              const std::string& policy_reason = {}, std::int64_t rule_id = 0);
  void AuditLocked(const std::string& kind, const std::string& actor, const std::string& subject,
                   std::string details_json);
  void AuditSessionEndLocked(const SessionRecord& record);

  std::unique_ptr<store::sqlite::Database> db_;
  SessionSettings settings_;
  TargetLookup lookup_;
  const Clock& clock_;
  mutable std::mutex mutex_;
  bool remote_access_enabled_;
  LiveMap open_;     // open and pending sessions, by id
  // Ended sessions whose streams have not all reported their bytes yet: their session_end audit
  // record waits for them (at most a few seconds, see Sweep).
  LiveMap closing_;
  std::uint64_t next_token_ = 1;
};

}  // namespace lifeline::gateway
