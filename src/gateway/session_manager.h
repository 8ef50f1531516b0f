#pragma once
// Remote sessions at the gateway: the customer's side of every engineer session. The home asks for
// a session to a device's application (never an address); the gateway decides, maps the pair to the
// registered address and port, enforces the time limit and idle timeout, lets the customer list and
// end sessions or switch remote access off, and keeps one audit record per session (engineer,
// reason, device, application, start, end, bytes each way, outcome) in sessions.db.
//
// No Asio here: the tunnel code (tunnel_client.cpp) reports streams starting and ending and gives
// each stream's live byte counters and a way to end it; a timer calls Sweep() once a second.
#include "common/clock.h"
#include "common/result.h"

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

/// Where a device's application is: the registered address and port.
struct SessionTarget {
  std::string host;
  std::uint16_t port = 0;
};

/// Maps (serial, application) to its registered target; on refusal returns nullopt and says why
/// ("device 'X' is not managed by this gateway", "application 'telnet' is not registered for ...").
using TargetLookup =
    std::function<std::optional<SessionTarget>(const std::string& serial, const std::string& app, std::string* why)>;

struct SessionSettings {
  bool remote_access_enabled = true;  // the config's default; `gateway remote-access off` overrides it
  std::chrono::seconds max_duration = std::chrono::hours(8);
  std::chrono::seconds idle_timeout = std::chrono::minutes(30);
};

struct SessionRequest {
  std::string engineer;  // as the home authenticated them
  std::string reason;    // "SR-1234: disk replacement"
  std::string device;    // serial, within the gateway's site
  std::string app;       // "ssh"
  std::string home;      // which home node asked (for the audit record)
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
  std::string outcome;              // "open", "ended by engineer", "ended at the gateway by NAME", "time limit", ...
  bool Open() const { return ended_ms == 0; }
};

/// A decision on a session or stream request: allowed, or an HTTP status and reason for the home.
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

  /// Ends sessions past their time limit or idle too long. Call about once a second.
  void Sweep();

  /// Open sessions, or the latest `limit` records of all when `include_ended`.
  std::vector<SessionRecord> List(bool include_ended, std::size_t limit = 200) const;
  std::optional<SessionRecord> Find(const std::string& session_id) const;

 private:
  struct Live;
  SessionManager(std::unique_ptr<store::sqlite::Database> db, SessionSettings settings, TargetLookup lookup,
                 const Clock& clock);
  void EndLocked(Live& live, const std::string& outcome, std::vector<std::function<void()>>* enders);
  void SaveLocked(const SessionRecord& record);
  void Refuse(const SessionRequest& request, int status, const std::string& reason, SessionDecision* decision);

  std::unique_ptr<store::sqlite::Database> db_;
  SessionSettings settings_;
  TargetLookup lookup_;
  const Clock& clock_;
  mutable std::mutex mutex_;
  bool remote_access_enabled_;
  std::map<std::string, std::unique_ptr<Live>> open_;  // by session id
  std::uint64_t next_token_ = 1;
};

}  // namespace lifeline::gateway
