#include "gateway/session_manager.h"

#include "common/log.h"
#include "crypto/keys.h"
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
constexpr std::array<std::string_view, 1> kMigrations = {
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
)sql"};

constexpr std::string_view kColumns =
    "id, engineer, reason, device, app, target, home, started_ms, ended_ms, expires_ms, idle_timeout_s, "
    "bytes_to_device, bytes_from_device, streams, outcome";

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
  return r;
}

std::string Rfc3339Ms(std::int64_t ms) {
  return FormatRfc3339(std::chrono::system_clock::time_point(std::chrono::milliseconds(ms)));
}

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
                                      {"outcome", r.outcome}});
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
  // Sessions still open in the log were cut short by a stop or crash of the gateway: close them.
  auto stmt = (*db)->Prepare("UPDATE sessions SET ended_ms = ?, outcome = 'gateway stopped' WHERE ended_ms = 0");
  if (stmt) {
    (void)stmt->BindAll(clock.NowUnixMillis()).Run();
  }
  return std::unique_ptr<SessionManager>(new SessionManager(std::move(*db), settings, std::move(lookup), clock));
}

SessionManager::SessionManager(std::unique_ptr<store::sqlite::Database> db, SessionSettings settings,
                               TargetLookup lookup, const Clock& clock)
    : db_(std::move(db)),
      settings_(settings),
      lookup_(std::move(lookup)),
      clock_(clock),
      remote_access_enabled_(settings.remote_access_enabled) {
  auto stmt = db_->Prepare("SELECT value FROM settings WHERE key = 'remote_access'");
  if (stmt) {
    if (auto row = stmt->Step(); row && *row) {
      remote_access_enabled_ = stmt->Text(0) == "on";
    }
  }
}

SessionManager::~SessionManager() = default;

void SessionManager::SaveLocked(const SessionRecord& r) {
  auto stmt = db_->Prepare(fmt::format("INSERT OR REPLACE INTO sessions ({}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                                       kColumns));
  if (!stmt) {
    Log()->error("session {}: cannot write its audit record: {}", r.id, db_->LastErrorMessage());
    return;
  }
  auto done = stmt->BindAll(r.id, r.engineer, r.reason, r.device, r.app, r.target, r.home, r.started_ms, r.ended_ms,
                            r.expires_ms, r.idle_timeout_s, static_cast<std::int64_t>(r.bytes_to_device),
                            static_cast<std::int64_t>(r.bytes_from_device), r.streams, r.outcome)
                  .Run();
  if (!done) {
    Log()->error("session {}: cannot write its audit record: {}", r.id, db_->LastErrorMessage());
  }
}

void SessionManager::Refuse(const SessionRequest& request, int status, const std::string& reason,
                            SessionDecision* decision) {
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
  r.started_ms = r.ended_ms = clock_.NowUnixMillis();
  r.outcome = "refused: " + reason;
  SaveLocked(r);
  decision->session = r;
  Log()->warn("refused a session for {} to {} {} ({}): {}", request.engineer, request.device, request.app,
              request.reason, reason);
}

SessionDecision SessionManager::Create(const SessionRequest& request) {
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
  auto live = std::make_unique<Live>();
  SessionRecord& r = live->record;
  r.id = crypto::RandomHex(16);
  r.engineer = request.engineer;
  r.reason = request.reason;
  r.device = request.device;
  r.app = request.app;
  r.home = request.home;
  r.target = target->host.find(':') != std::string::npos ? fmt::format("[{}]:{}", target->host, target->port)
                                                         : fmt::format("{}:{}", target->host, target->port);
  r.started_ms = clock_.NowUnixMillis();
  r.expires_ms = r.started_ms + std::chrono::duration_cast<std::chrono::milliseconds>(settings_.max_duration).count();
  r.idle_timeout_s = settings_.idle_timeout.count();
  r.outcome = "open";
  live->target = *target;
  live->last_activity_ms = r.started_ms;
  SaveLocked(r);
  Log()->info("session {} opened: engineer {} to {} {} ({}), reason '{}', ends at the latest in {} s", r.id,
              r.engineer, r.device, r.app, r.target, r.reason, settings_.max_duration.count());
  decision.allowed = true;
  decision.session = r;
  decision.target = *target;
  open_.emplace(r.id, std::move(live));
  return decision;
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
  if (it == open_.end()) {
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
  auto it = open_.find(session_id);
  if (it != open_.end()) {
    Live& live = *it->second;
    if (live.streams.erase(token) != 0) {
      live.record.bytes_to_device += to_device;
      live.record.bytes_from_device += from_device;
      live.last_activity_ms = clock_.NowUnixMillis();
    }
    return;
  }
  // The session already ended (its streams were reset then): add the stream's bytes to its record.
  auto stmt = db_->Prepare(
      "UPDATE sessions SET bytes_to_device = bytes_to_device + ?, bytes_from_device = bytes_from_device + ? "
      "WHERE id = ?");
  if (stmt) {
    (void)stmt->BindAll(static_cast<std::int64_t>(to_device), static_cast<std::int64_t>(from_device), session_id)
        .Run();
  }
}

void SessionManager::EndLocked(Live& live, const std::string& outcome, std::vector<std::function<void()>>* enders) {
  SessionRecord& r = live.record;
  r.ended_ms = clock_.NowUnixMillis();
  r.outcome = outcome;
  // Bytes of streams still running are added when each reports its end (StreamEnded).
  for (auto& [token, stream] : live.streams) {
    if (stream.control.end) {
      enders->push_back(stream.control.end);
    }
  }
  SaveLocked(r);
  Log()->info("session {} ended ({}): engineer {} to {} {}, {} connection(s), {} bytes to the device, {} from it",
              r.id, outcome, r.engineer, r.device, r.app, r.streams, r.bytes_to_device, r.bytes_from_device);
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
    EndLocked(*it->second, "ended by engineer", &enders);
    record = it->second->record;
    open_.erase(it);
  }
  for (auto& end : enders) {
    end();
  }
  return record;
}

Result<SessionRecord> SessionManager::Kill(const std::string& session_id, const std::string& who) {
  std::vector<std::function<void()>> enders;
  SessionRecord record;
  {
    std::lock_guard lock(mutex_);
    auto it = open_.find(session_id);
    if (it == open_.end()) {
      return std::make_error_code(std::errc::no_such_file_or_directory);
    }
    EndLocked(*it->second, fmt::format("ended at the gateway by {}", who), &enders);
    record = it->second->record;
    open_.erase(it);
  }
  for (auto& end : enders) {
    end();
  }
  return record;
}

void SessionManager::SetRemoteAccess(bool enabled, const std::string& who) {
  std::vector<std::function<void()>> enders;
  {
    std::lock_guard lock(mutex_);
    remote_access_enabled_ = enabled;
    auto stmt = db_->Prepare("INSERT OR REPLACE INTO settings (key, value) VALUES ('remote_access', ?)");
    if (!stmt || !stmt->BindAll(std::string(enabled ? "on" : "off")).Run()) {
      Log()->error("cannot save the remote access setting: {}", db_->LastErrorMessage());
    }
    Log()->warn("remote access switched {} by {}", enabled ? "on" : "off", who);
    if (!enabled) {
      for (auto& [id, live] : open_) {
        EndLocked(*live, fmt::format("remote access switched off by {}", who), &enders);
      }
      open_.clear();
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
  std::vector<std::function<void()>> enders;
  {
    std::lock_guard lock(mutex_);
    const std::int64_t now = clock_.NowUnixMillis();
    for (auto it = open_.begin(); it != open_.end();) {
      Live& live = *it->second;
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
      EndLocked(live, outcome, &enders);
      it = open_.erase(it);
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
  {
    std::lock_guard lock(mutex_);
    if (auto it = open_.find(session_id); it != open_.end()) {
      SessionRecord r = it->second->record;
      r.open_streams = static_cast<std::int64_t>(it->second->streams.size());
      return r;
    }
  }
  std::lock_guard lock(mutex_);
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
