#include "gateway/session_manager.h"

#include "common/log.h"
#include "crypto/keys.h"
#include "policy/policy_json.h"
#include "store/sqlite/database.h"

#include <boost/json.hpp>
#include <fmt/format.h>

#include <array>
#include <filesystem>
#include <string_view>
#include <system_error>

namespace lifeline::gateway {
namespace {

std::shared_ptr<spdlog::logger> Log() { return log::Get("gateway"); }

// sessions.db: one row per session, written when it opens and again when it ends (the audit record).
constexpr std::array<std::string_view, 2> kMigrations = {
    R"sql(
CREATE TABLE sessions (
  id TEXT PRIMARY KEY,
  engineer TEXT NOT NULL,
  reason TEXT NOT NULL,
  device TEXT NOT NULL,
  app TEXT NOT NULL,
  target TEXT NOT NULL,
  home TEXT NOT NULL,
  started_ms INTEGER NOT NULL,
  ended_ms INTEGER NOT NULL,
  expires_ms INTEGER NOT NULL,
  idle_timeout_s INTEGER NOT NULL,
  bytes_to_device INTEGER NOT NULL,
  bytes_from_device INTEGER NOT NULL,
  streams INTEGER NOT NULL,
  outcome TEXT NOT NULL
);
CREATE INDEX sessions_started ON sessions(started_ms);
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
)sql",
    // Policy decisions (issue 6): why a session was allowed, asked for or refused, and by which rule.
    R"sql(
ALTER TABLE sessions ADD COLUMN service_request TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN policy_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN rule_id INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN approval_expires_ms INTEGER NOT NULL DEFAULT 0;
)sql"};

constexpr std::string_view kColumns =
    "id, engineer, reason, device, app, target, home, started_ms, ended_ms, expires_ms, idle_timeout_s, "
    "bytes_to_device, bytes_from_device, streams, outcome, service_request, policy_reason, rule_id, "
    "approval_expires_ms";

SessionRecord ReadRecord(const store::sqlite::Statement& row) {
  SessionRecord r;
  r.id = row.Text(0);
  r.engineer = row.Text(1);
  r.reason = row.Text(2);
  r.device = row.Text(3);
  r.app = row.Text(4);
  r.target = row.Text(5);
  r.home = row.Text(6);
  r.started_ms = row.Int(7);
  r.ended_ms = row.Int(8);
  r.expires_ms = row.Int(9);
  r.idle_timeout_s = row.Int(10);
  r.bytes_to_device = static_cast<std::uint64_t>(row.Int(11));
  r.bytes_from_device = static_cast<std::uint64_t>(row.Int(12));
  r.streams = row.Int(13);
  r.outcome = row.Text(14);
  r.service_request = row.Text(15);
  r.policy_reason = row.Text(16);
  r.rule_id = row.Int(17);
  r.approval_expires_ms = row.Int(18);
  return r;
}

std::string Rfc3339Ms(std::int64_t ms) {
  return FormatRfc3339(std::chrono::system_clock::time_point(std::chrono::milliseconds(ms)));
}

std::string TargetText(const SessionTarget& target) {
  return target.host.find(':') != std::string::npos ? fmt::format("[{}]:{}", target.host, target.port)
                                                     : fmt::format("{}:{}", target.host, target.port);
}

constexpr const char* kDisabledReason =
    "the policy manager is disabled at this gateway ([policy] disabled = true): every session is allowed";
constexpr const char* kNoManagerReason =
    "no policy manager configured at this gateway ([policy] url): every session is refused";

}  // namespace

std::string SessionJson(const SessionRecord& r) {
  namespace json = boost::json;
  return json::serialize(json::object{{"id", r.id},
                                      {"engineer", r.engineer},
                                      {"reason", r.reason},
                                      {"device", r.device},
                                      {"app", r.app},
                                      {"target", r.target},
                                      {"home", r.home},
                                      {"started_at", Rfc3339Ms(r.started_ms)},
                                      {"ended_at", r.ended_ms == 0 ? json::value(nullptr) : json::value(Rfc3339Ms(r.ended_ms))},
                                      {"expires_at", r.expires_ms == 0 ? json::value(nullptr) : json::value(Rfc3339Ms(r.expires_ms))},
                                      {"idle_timeout_s", r.idle_timeout_s},
                                      {"bytes_to_device", r.bytes_to_device},
                                      {"bytes_from_device", r.bytes_from_device},
                                      {"connections", r.streams},
                                      {"open_connections", r.open_streams},
                                      {"outcome", r.outcome},
                                      {"service_request", r.service_request},
                                      {"policy_reason", r.policy_reason},
                                      {"rule_id", r.rule_id},
                                      {"approval_expires_ms", r.approval_expires_ms},
                                      {"approval_expires_at", r.approval_expires_ms == 0
                                                                  ? json::value(nullptr)
                                                                  : json::value(Rfc3339Ms(r.approval_expires_ms))}});
}

struct SessionManager::Live {
  SessionRecord record;
  SessionTarget target;
  std::int64_t last_activity_ms = 0;
  struct Stream {
    StreamControl control;
    std::uint64_t seen_to = 0, seen_from = 0;  // live counters at the last sweep
  };
  std::map<std::uint64_t, Stream> streams;
};

Result<std::unique_ptr<SessionManager>> SessionManager::Open(const std::filesystem::path& db_path,
                                                             SessionSettings settings, TargetLookup lookup,
                                                             const Clock& clock) {
  auto db = store::sqlite::Database::Open(db_path, {.private_file = true});  // the audit trail: 0600
  if (!db) {
    Log()->error("cannot open the session log {}: {}", db_path.string(), db.error().message());
    return db.error();
  }
  if (auto migrated = (*db)->Migrate(kMigrations); !migrated) {
    Log()->error("cannot prepare the session log {}: {}", db_path.string(), (*db)->LastErrorMessage());
    return migrated.error();
  }
  auto manager =
      std::unique_ptr<SessionManager>(new SessionManager(std::move(*db), settings, std::move(lookup), clock));
  // Sessions still open (or waiting for approval) in the log were cut short by a stop or crash of
  // the gateway: close them, and owe the policy manager their end.
  std::vector<SessionRecord> cut;
  if (auto stmt = manager->db_->Prepare(fmt::format("SELECT {} FROM sessions WHERE ended_ms = 0", kColumns))) {
    while (true) {
      auto row = stmt->Step();
      if (!row || !*row) {
        break;
      }
      cut.push_back(ReadRecord(*stmt));
    }
  }
  std::lock_guard lock(manager->mutex_);
  for (auto& record : cut) {
    record.ended_ms = clock.NowUnixMillis();
    record.outcome = "gateway stopped";
    manager->SaveLocked(record);
    manager->AuditSessionEndLocked(record);
  }
  return manager;
}

SessionManager::SessionManager(std::unique_ptr<store::sqlite::Database> db, SessionSettings settings,
                               TargetLookup lookup, const Clock& clock)
    : db_(std::move(db)),
      settings_(std::move(settings)),
      lookup_(std::move(lookup)),
      clock_(clock),
      remote_access_enabled_(settings_.remote_access_enabled) {
  auto stmt = db_->Prepare("SELECT value FROM settings WHERE key = 'remote_access'");
  if (stmt) {
    if (auto row = stmt->Step(); row && *row) {
      remote_access_enabled_ = stmt->Text(0) == "on";
    }
  }
}

SessionManager::~SessionManager() {
  // Ended sessions still waiting for their streams' bytes: their end is owed to the audit log now.
  // (Open ones are closed as "gateway stopped" at the next start.)
  std::lock_guard lock(mutex_);
  for (auto& [id, live] : closing_) {
    AuditSessionEndLocked(live->record);
  }
}

void SessionManager::SaveLocked(const SessionRecord& r) {
  auto stmt = db_->Prepare(fmt::format(
      "INSERT OR REPLACE INTO sessions ({}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", kColumns));
  if (!stmt) {
    Log()->error("session {}: cannot write its audit record: {}", r.id, db_->LastErrorMessage());
    return;
  }
  auto done = stmt->BindAll(r.id, r.engineer, r.reason, r.device, r.app, r.target, r.home, r.started_ms, r.ended_ms,
                            r.expires_ms, r.idle_timeout_s, static_cast<std::int64_t>(r.bytes_to_device),
                            static_cast<std::int64_t>(r.bytes_from_device), r.streams, r.outcome, r.service_request,
                            r.policy_reason, r.rule_id, r.approval_expires_ms)
                  .Run();
  if (!done) {
    Log()->error("session {}: cannot write its audit record: {}", r.id, db_->LastErrorMessage());
  }
}

void SessionManager::AuditLocked(const std::string& kind, const std::string& actor, const std::string& subject,
                                 std::string details_json) {
  if (settings_.policy.cache == nullptr) {
    return;
  }
  // The outbox logs its own failure; the session's own record in sessions.db stays the local trail.
  (void)settings_.policy.cache->Append(
      AuditRecord{NewAuditRecordId(), clock_.NowUnixMillis(), kind, actor, subject, std::move(details_json)});
}

void SessionManager::AuditSessionEndLocked(const SessionRecord& r) {
  namespace json = boost::json;
  AuditLocked("session_end", r.engineer, r.device,
              json::serialize(json::object{{"session_id", r.id},
                                           {"application", r.app},
                                           {"outcome", r.outcome},
                                           {"started_ms", r.started_ms},
                                           {"ended_ms", r.ended_ms},
                                           {"bytes_to_device", r.bytes_to_device},
                                           {"bytes_from_device", r.bytes_from_device},
                                           {"connections", r.streams}}));
}

void SessionManager::Refuse(const SessionRequest& request, int status, const std::string& reason,
                            SessionDecision* decision, const std::string& policy_reason, std::int64_t rule_id) {
  namespace json = boost::json;
  decision->allowed = false;
  decision->status = status;
  decision->reason = reason;
  SessionRecord r;
  r.id = crypto::RandomHex(16);
  r.engineer = request.engineer;
  r.reason = request.reason;
  r.device = request.device;
  r.app = request.app;
  r.home = request.home;
  r.service_request = request.service_request;
  r.policy_reason = policy_reason;
  r.rule_id = rule_id;
  r.started_ms = r.ended_ms = clock_.NowUnixMillis();
  r.outcome = "refused: " + reason;
  SaveLocked(r);
  AuditLocked("decision", request.engineer, request.device,
              json::serialize(json::object{{"session_id", r.id},
                                           {"activity", "remote_session"},
                                           {"application", request.app},
                                           {"verdict", "deny"},
                                           {"reason", reason},
                                           {"rule_id", rule_id},
                                           {"engineer_reason", request.reason},
                                           {"service_request", request.service_request}}));
  decision->session = r;
  Log()->warn("refused a session for {} to {} {} ({}): {}", request.engineer, request.device, request.app,
              request.reason, reason);
}

void SessionManager::OpenLocked(Live& live, std::int64_t now) {
  namespace json = boost::json;
  SessionRecord& r = live.record;
  r.started_ms = now;
  r.expires_ms = now + std::chrono::duration_cast<std::chrono::milliseconds>(settings_.max_duration).count();
  r.idle_timeout_s = settings_.idle_timeout.count();
  r.outcome = "open";
  live.last_activity_ms = now;
  SaveLocked(r);
  AuditLocked("session_start", r.engineer, r.device,
              json::serialize(json::object{{"session_id", r.id},
                                           {"application", r.app},
                                           {"target", r.target},
                                           {"engineer_reason", r.reason},
                                           {"service_request", r.service_request},
                                           {"policy_reason", r.policy_reason},
                                           {"rule_id", r.rule_id},
                                           {"expires_ms", r.expires_ms}}));
  Log()->info("session {} opened: engineer {} to {} {} ({}), reason '{}', ends at the latest in {} s ({})", r.id,
              r.engineer, r.device, r.app, r.target, r.reason, settings_.max_duration.count(), r.policy_reason);
}

SessionDecision SessionManager::Create(const SessionRequest& request) {
  namespace json = boost::json;
  SessionDecision decision;
  std::lock_guard lock(mutex_);
  if (!remote_access_enabled_) {
    Refuse(request, 403, "remote access is switched off at this gateway", &decision);
    return decision;
  }
  if (request.engineer.empty() || request.device.empty() || request.app.empty()) {
    Refuse(request, 400, "a session needs an engineer, a device and an application", &decision);
    return decision;
  }
  std::string why;
  auto target = lookup_(request.device, request.app, &why);
  if (!target) {
    Refuse(request, 404, why, &decision);
    return decision;
  }
  const std::int64_t now = clock_.NowUnixMillis();

  // The policy: allow, refuse, or ask an approver.
  policy::Decision verdict;
  std::uint64_t policy_version = 0;
  switch (settings_.policy.mode) {
    case PolicyMode::kNone:
      Refuse(request, 403, kNoManagerReason, &decision, kNoManagerReason);
      return decision;
    case PolicyMode::kDisabled:
      verdict.verdict = policy::Verdict::kAllow;
      verdict.reason = kDisabledReason;
      break;
    case PolicyMode::kManaged: {
      auto compiled = settings_.policy.cache != nullptr ? settings_.policy.cache->Current() : nullptr;
      if (!compiled) {
        const std::string reason = "no policy from the policy manager yet: every session is refused";
        Refuse(request, 403, reason, &decision, reason);
        return decision;
      }
      if (target->deployed_ms > settings_.policy.cache->SyncedMs()) {
        const std::string reason = fmt::format(
            "device {} was deployed after the last contact with the policy manager; waiting for a policy",
            request.device);
        Refuse(request, 403, reason, &decision, reason);
        return decision;
      }
      policy_version = compiled->version();
      verdict = compiled->Decide(policy::DecisionRequest{
          policy::Activity::kRemoteSession, request.app, request.device, target->model, request.engineer,
          std::chrono::system_clock::time_point(std::chrono::milliseconds(now))});
      break;
    }
  }
  if (verdict.verdict == policy::Verdict::kDeny) {
    Refuse(request, 403, verdict.reason, &decision, verdict.reason, verdict.rule_id);
    return decision;
  }

  auto live = std::make_unique<Live>();
  SessionRecord& r = live->record;
  r.id = crypto::RandomHex(16);
  r.engineer = request.engineer;
  r.reason = request.reason;
  r.device = request.device;
  r.app = request.app;
  r.home = request.home;
  r.service_request = request.service_request;
  r.target = TargetText(*target);
  r.policy_reason = verdict.reason;
  r.rule_id = verdict.rule_id;
  r.started_ms = now;
  live->target = *target;
  live->last_activity_ms = now;
  const bool ask = verdict.verdict == policy::Verdict::kAsk;
  json::object details{{"session_id", r.id},
                       {"activity", "remote_session"},
                       {"application", r.app},
                       {"verdict", ask ? "ask" : "allow"},
                       {"reason", verdict.reason},
                       {"rule_id", verdict.rule_id},
                       {"grant_id", verdict.grant_id},
                       {"decided_by", settings_.policy.mode == PolicyMode::kDisabled
                                          ? std::string("policy_manager_disabled")
                                          : std::string(policy::WireName(verdict.decided_by))},
                       {"policy_version", policy_version},
                       {"engineer_reason", r.reason},
                       {"service_request", r.service_request}};
  if (ask) {
    r.approval_expires_ms = now + std::chrono::duration_cast<std::chrono::milliseconds>(verdict.ask_timeout).count();
    details["approval_expires_ms"] = r.approval_expires_ms;
  }
  AuditLocked("decision", r.engineer, r.device, json::serialize(details));
  if (ask) {
    r.outcome = SessionRecord::kPendingApproval;
    SaveLocked(r);
    ApprovalRequest approval{r.id,
                             r.engineer,
                             r.device,
                             target->model,
                             r.app,
                             r.reason,
                             r.service_request,
                             verdict.rule_id,
                             verdict.ask_timeout.count(),
                             now,
                             r.approval_expires_ms};
    AuditLocked("request", r.engineer, r.device,
                json::serialize(json::object{{"request_id", r.id},
                                             {"activity", "remote_session"},
                                             {"application", r.app},
                                             {"model", target->model},
                                             {"engineer_reason", r.reason},
                                             {"service_request", r.service_request},
                                             {"rule_id", verdict.rule_id},
                                             {"timeout_s", approval.timeout_s},
                                             {"expires_ms", r.approval_expires_ms}}));
    if (settings_.policy.request_approval) {
      settings_.policy.request_approval(approval);
    }
    Log()->info("session {} waits for approval: engineer {} to {} {} ({}), reason '{}', until {} ({})", r.id,
                r.engineer, r.device, r.app, r.target, r.reason, Rfc3339Ms(r.approval_expires_ms), verdict.reason);
    decision.status = 202;
  } else {
    OpenLocked(*live, now);
    decision.status = 201;
  }
  decision.allowed = true;
  decision.session = r;
  decision.target = *target;
  open_.emplace(r.id, std::move(live));
  return decision;
}

void SessionManager::OnApprovalOutcome(const ApprovalOutcome& outcome) {
  namespace json = boost::json;
  std::vector<std::function<void()>> enders;
  {
    std::lock_guard lock(mutex_);
    auto it = open_.find(outcome.request_id);
    if (it == open_.end() || !it->second->record.Pending()) {
      return;  // ended meanwhile (engineer, customer, deadline, restart) or decided already
    }
    SessionRecord& r = it->second->record;
    const std::int64_t now = clock_.NowUnixMillis();
    std::string state = outcome.state;
    if (state == "approved" && now >= r.approval_expires_ms) {
      state = "expired";  // too late: the gateway's own deadline has passed
    }
    AuditLocked("approval", outcome.decided_by.empty() ? std::string("policy") : outcome.decided_by, r.device,
                json::serialize(json::object{{"request_id", r.id},
                                             {"state", state},
                                             {"decided_by", outcome.decided_by},
                                             {"comment", outcome.comment},
                                             {"decided_ms", outcome.decided_ms},
                                             {"engineer", r.engineer},
                                             {"application", r.app}}));
    if (state == "approved") {
      r.policy_reason += fmt::format("; approved by {}{}", outcome.decided_by,
                                     outcome.comment.empty() ? "" : ": " + outcome.comment);
      OpenLocked(*it->second, now);
    } else if (state == "denied") {
      EndLocked(it,
                fmt::format("denied by {}{}", outcome.decided_by.empty() ? "an approver" : outcome.decided_by,
                            outcome.comment.empty() ? "" : ": " + outcome.comment),
                &enders);
    } else if (state == "expired") {
      EndLocked(it, "approval timed out", &enders);
    } else {
      Log()->warn("session {}: the policy manager reported the unknown request state '{}'", r.id, outcome.state);
    }
  }
  for (auto& end : enders) {
    end();
  }
}

SessionDecision SessionManager::AuthorizeStream(const std::string& session_id) {
  SessionDecision decision;
  std::lock_guard lock(mutex_);
  auto it = open_.find(session_id);
  if (it == open_.end()) {
    decision.status = 410;
    decision.reason = fmt::format("session {} is not open at this gateway", session_id);
    return decision;
  }
  Live& live = *it->second;
  if (live.record.Pending()) {
    decision.status = 409;
    decision.reason = fmt::format("session {} is waiting for approval (until {})", session_id,
                                  Rfc3339Ms(live.record.approval_expires_ms));
    return decision;
  }
  // The device may have been undeployed or its application removed since the session opened.
  std::string why;
  auto target = lookup_(live.record.device, live.record.app, &why);
  if (!target) {
    decision.status = 404;
    decision.reason = why;
    return decision;
  }
  live.target = *target;
  decision.allowed = true;
  decision.session = live.record;
  decision.target = *target;
  return decision;
}

std::uint64_t SessionManager::StreamStarted(const std::string& session_id, StreamControl control) {
  std::unique_lock lock(mutex_);
  auto it = open_.find(session_id);
  if (it == open_.end() || it->second->record.Pending()) {
    lock.unlock();
    if (control.end) {
      control.end();  // the session ended while the device connection was being made
    }
    return 0;
  }
  const std::uint64_t token = next_token_++;
  it->second->streams.emplace(token, Live::Stream{std::move(control)});
  it->second->record.streams += 1;
  it->second->last_activity_ms = clock_.NowUnixMillis();
  return token;
}

void SessionManager::StreamEnded(const std::string& session_id, std::uint64_t token, std::uint64_t to_device,
                                 std::uint64_t from_device) {
  std::lock_guard lock(mutex_);
  if (auto it = open_.find(session_id); it != open_.end()) {
    Live& live = *it->second;
    if (live.streams.erase(token) != 0) {
      live.record.bytes_to_device += to_device;
      live.record.bytes_from_device += from_device;
      live.last_activity_ms = clock_.NowUnixMillis();
    }
    return;
  }
  if (auto it = closing_.find(session_id); it != closing_.end()) {
    // The session ended and reset this stream: its bytes complete the record and, with the last
    // stream, the session_end audit record.
    Live& live = *it->second;
    if (live.streams.erase(token) != 0) {
      live.record.bytes_to_device += to_device;
      live.record.bytes_from_device += from_device;
      SaveLocked(live.record);
    }
    if (live.streams.empty()) {
      AuditSessionEndLocked(live.record);
      closing_.erase(it);
    }
    return;
  }
  // The session ended long ago (its audit record is sent): add the stream's bytes to its row.
  auto stmt = db_->Prepare(
      "UPDATE sessions SET bytes_to_device = bytes_to_device + ?, bytes_from_device = bytes_from_device + ? "
      "WHERE id = ?");
  if (stmt) {
    (void)stmt->BindAll(static_cast<std::int64_t>(to_device), static_cast<std::int64_t>(from_device), session_id)
        .Run();
  }
}

SessionRecord SessionManager::EndLocked(LiveMap::iterator it, const std::string& outcome,
                                        std::vector<std::function<void()>>* enders) {
  std::unique_ptr<Live> live = std::move(it->second);
  open_.erase(it);
  SessionRecord& r = live->record;
  r.ended_ms = clock_.NowUnixMillis();
  r.outcome = outcome;
  // Bytes of streams still running are added when each reports its end (StreamEnded).
  for (auto& [token, stream] : live->streams) {
    if (stream.control.end) {
      enders->push_back(stream.control.end);
    }
  }
  SaveLocked(r);
  Log()->info("session {} ended ({}): engineer {} to {} {}, {} connection(s), {} bytes to the device, {} from it",
              r.id, outcome, r.engineer, r.device, r.app, r.streams, r.bytes_to_device, r.bytes_from_device);
  SessionRecord record = r;
  if (live->streams.empty()) {
    AuditSessionEndLocked(record);
  } else {
    closing_[record.id] = std::move(live);
  }
  return record;
}

Result<SessionRecord> SessionManager::EndByEngineer(const std::string& session_id) {
  std::vector<std::function<void()>> enders;
  SessionRecord record;
  {
    std::lock_guard lock(mutex_);
    auto it = open_.find(session_id);
    if (it == open_.end()) {
      return std::make_error_code(std::errc::no_such_file_or_directory);
    }
    record = EndLocked(it, "ended by engineer", &enders);
  }
  for (auto& end : enders) {
    end();
  }
  return record;
}

Result<SessionRecord> SessionManager::Kill(const std::string& session_id, const std::string& who) {
  namespace json = boost::json;
  std::vector<std::function<void()>> enders;
  SessionRecord record;
  {
    std::lock_guard lock(mutex_);
    auto it = open_.find(session_id);
    if (it == open_.end()) {
      return std::make_error_code(std::errc::no_such_file_or_directory);
    }
    AuditLocked("session_kill", who, it->second->record.device,
                json::serialize(json::object{{"session_id", session_id},
                                             {"engineer", it->second->record.engineer},
                                             {"application", it->second->record.app}}));
    record = EndLocked(it, fmt::format("ended at the gateway by {}", who), &enders);
  }
  for (auto& end : enders) {
    end();
  }
  return record;
}

void SessionManager::SetRemoteAccess(bool enabled, const std::string& who) {
  namespace json = boost::json;
  std::vector<std::function<void()>> enders;
  {
    std::lock_guard lock(mutex_);
    remote_access_enabled_ = enabled;
    auto stmt = db_->Prepare("INSERT OR REPLACE INTO settings (key, value) VALUES ('remote_access', ?)");
    if (!stmt || !stmt->BindAll(std::string(enabled ? "on" : "off")).Run()) {
      Log()->error("cannot save the remote access setting: {}", db_->LastErrorMessage());
    }
    AuditLocked("remote_access_switch", who, "",
                json::serialize(json::object{{"enabled", enabled}, {"open_sessions", open_.size()}}));
    Log()->warn("remote access switched {} by {}", enabled ? "on" : "off", who);
    if (!enabled) {
      while (!open_.empty()) {
        EndLocked(open_.begin(), fmt::format("remote access switched off by {}", who), &enders);
      }
    }
  }
  for (auto& end : enders) {
    end();
  }
}

bool SessionManager::RemoteAccessEnabled() const {
  std::lock_guard lock(mutex_);
  return remote_access_enabled_;
}

void SessionManager::Sweep() {
  // A stream the session's end reset reports within a moment; one that does not (a stuck device
  // connection) must not hold the session_end audit record back for long.
  constexpr std::int64_t kClosingGraceMs = 5000;
  std::vector<std::function<void()>> enders;
  {
    std::lock_guard lock(mutex_);
    const std::int64_t now = clock_.NowUnixMillis();
    for (auto it = open_.begin(); it != open_.end();) {
      Live& live = *it->second;
      if (live.record.Pending()) {
        // The gateway's own deadline holds even when the policy manager cannot be reached.
        if (now >= live.record.approval_expires_ms) {
          AuditLocked("approval", "gateway", live.record.device,
                      boost::json::serialize(boost::json::object{{"request_id", live.record.id},
                                                                 {"state", "expired"},
                                                                 {"decided_by", "gateway"},
                                                                 {"engineer", live.record.engineer},
                                                                 {"application", live.record.app}}));
          EndLocked(it++, "approval timed out", &enders);
        } else {
          ++it;
        }
        continue;
      }
      for (auto& [token, stream] : live.streams) {
        if (!stream.control.bytes) {
          // No live counters (the multiplexer ends idle streams itself): an open stream is activity.
          live.last_activity_ms = now;
          continue;
        }
        const auto [to, from] = stream.control.bytes();
        if (to != stream.seen_to || from != stream.seen_from) {
          stream.seen_to = to;
          stream.seen_from = from;
          live.last_activity_ms = now;
        }
      }
      std::string outcome;
      if (now >= live.record.expires_ms) {
        outcome = "time limit";
      } else if (now - live.last_activity_ms >= live.record.idle_timeout_s * 1000) {
        outcome = "idle timeout";
      }
      if (outcome.empty()) {
        ++it;
        continue;
      }
      EndLocked(it++, outcome, &enders);
    }
    for (auto it = closing_.begin(); it != closing_.end();) {
      if (now - it->second->record.ended_ms >= kClosingGraceMs) {
        AuditSessionEndLocked(it->second->record);
        it = closing_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& end : enders) {
    end();
  }
}

std::vector<SessionRecord> SessionManager::List(bool include_ended, std::size_t limit) const {
  std::lock_guard lock(mutex_);
  std::vector<SessionRecord> out;
  if (!include_ended) {
    for (const auto& [id, live] : open_) {
      out.push_back(live->record);
      out.back().open_streams = static_cast<std::int64_t>(live->streams.size());
    }
    return out;
  }
  auto stmt = db_->Prepare(fmt::format("SELECT {} FROM sessions ORDER BY started_ms DESC, id LIMIT ?", kColumns));
  if (!stmt) {
    return out;
  }
  stmt->BindAll(static_cast<std::int64_t>(limit));
  while (true) {
    auto row = stmt->Step();
    if (!row || !*row) {
      break;
    }
    SessionRecord r = ReadRecord(*stmt);
    if (auto it = open_.find(r.id); it != open_.end()) {
      r = it->second->record;
      r.open_streams = static_cast<std::int64_t>(it->second->streams.size());
    }
    out.push_back(std::move(r));
  }
  return out;
}

std::optional<SessionRecord> SessionManager::Find(const std::string& session_id) const {
  std::lock_guard lock(mutex_);
  if (auto it = open_.find(session_id); it != open_.end()) {
    SessionRecord r = it->second->record;
    r.open_streams = static_cast<std::int64_t>(it->second->streams.size());
    return r;
  }
  auto stmt = db_->Prepare(fmt::format("SELECT {} FROM sessions WHERE id = ?", kColumns));
  if (!stmt) {
    return std::nullopt;
  }
  stmt->BindAll(session_id);
  auto row = stmt->Step();
  if (!row || !*row) {
    return std::nullopt;
  }
  return ReadRecord(*stmt);
}

}  // namespace lifeline::gateway
