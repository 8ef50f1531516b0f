#pragma once
// The policy manager's append-only, tamper-evident audit log (issue 6, docs/policy.md "Audit log").
//
// Every record carries a gapless sequence number (from 1) and the SHA-256 of its canonical encoding,
// which includes the previous record's hash, so the records form a hash chain. Every N records or T
// seconds the log signs a checkpoint {sequence, hash, time} with its own Ed25519 key; a checkpoint
// pins everything up to it, so a record changed, removed or moved before it cannot go unnoticed even
// by someone who recomputes the chain. The canonical encoding (AuditRecordEncoding) is written down
// here and in docs/policy.md so an auditor can re-implement the verification.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "common/clock.h"
#include "common/result.h"
#include "crypto/keys.h"

namespace lifeline::store::sql {
class Database;
class Session;
}

namespace lifeline::policy {

enum class AuditErrc {
  kBadRecord = 1,     // a record to append is malformed (empty kind, details not a JSON object, too long)
  kCorruptLog,        // the stored chain head cannot be read back (the log was damaged)
  kBadExport,         // an export file cannot be read at all
};
const std::error_category& AuditErrorCategory();
inline std::error_code make_error_code(AuditErrc code) {
  return {static_cast<int>(code), AuditErrorCategory()};
}

/// The prev_hash of sequence 1: 64 zeros.
inline constexpr std::string_view kAuditGenesisHash =
    "0000000000000000000000000000000000000000000000000000000000000000";

/// Limits on what an appended record may carry (the gateway's records are untrusted input).
inline constexpr std::size_t kMaxAuditFieldBytes = 1024;
inline constexpr std::size_t kMaxAuditDetailsBytes = 64 * 1024;

/// Record kinds the policy manager and the gateway write. Others are allowed (lowercase word).
namespace audit_kind {
inline constexpr std::string_view kRequest = "request";
inline constexpr std::string_view kDecision = "decision";
inline constexpr std::string_view kSessionStart = "session_start";
inline constexpr std::string_view kSessionEnd = "session_end";
inline constexpr std::string_view kConnectHomeUpload = "connect_home_upload";
inline constexpr std::string_view kFileTransfer = "file_transfer";
inline constexpr std::string_view kPolicyChange = "policy_change";
inline constexpr std::string_view kLogin = "login";
inline constexpr std::string_view kAdminAction = "admin_action";
}  // namespace audit_kind

struct AuditRecord {
  std::int64_t sequence = 0;      // assigned by the log: 1, 2, 3, ... without gaps
  std::int64_t time_ms = 0;       // when it happened (Unix ms); kept as given for late deliveries
  std::int64_t received_ms = 0;   // when the log appended it (assigned by the log)
  std::string record_id;          // the writer's id, unique in the log; a repeat is ignored ("" = assigned)
  std::string source;             // who wrote it: "policy", or a gateway's name
  std::string kind;               // audit_kind::*
  std::string actor;              // the engineer, user or token name ("" when none)
  std::string subject;            // the device, application or policy concerned ("" when none)
  std::string details = "{}";     // a JSON object; stored in its canonical (re-serialized) text
  std::string prev_hash;          // lowercase hex SHA-256 of the previous record (kAuditGenesisHash for 1)
  std::string hash;               // lowercase hex SHA-256 of AuditRecordEncoding(*this)
};

struct AuditCheckpoint {
  std::int64_t sequence = 0;  // the last record it covers
  std::string hash;           // that record's hash
  std::int64_t time_ms = 0;   // when it was signed
  std::string signature;      // standard base64 of the Ed25519 signature of AuditCheckpointEncoding
};

/// The bytes hashed for a record: "lifeline-audit-record-v1\n" followed by, for each field in the
/// order sequence, time_ms, received_ms, record_id, source, kind, actor, subject, details, prev_hash,
/// the field's length in bytes (decimal), ':', the field's bytes, '\n'. Integers are decimal with a
/// '-' for negatives and no leading zeros. hash = lowercase hex of SHA-256 of these bytes.
std::string AuditRecordEncoding(const AuditRecord& record);
/// The bytes signed for a checkpoint: "lifeline-audit-checkpoint-v1\n" then sequence, hash, time_ms
/// encoded the same way.
std::string AuditCheckpointEncoding(const AuditCheckpoint& checkpoint);
/// Lowercase hex SHA-256 of `bytes`.
std::string Sha256Hex(std::string_view bytes);
/// SHA-256 of the record's encoding (what `hash` must be).
std::string ComputeAuditHash(const AuditRecord& record);

/// Where each appended record is also sent, as an RFC 5424 line (see audit_export.h).
struct AuditSyslogOptions {
  enum class Transport { kUdp, kTcp };
  Transport transport = Transport::kUdp;
  std::string host = "127.0.0.1";
  int port = 514;
  int facility = 13;  // "log audit"
  std::string hostname;  // HOSTNAME field; "" = gethostname()
  std::string app_name = "lifeline-policy";
};

class SyslogForwarder;

/// The records with first <= sequence <= last (last 0 = to the end) of an audit store, in sequence
/// order, at most `limit` (0 = all), read as stored. AuditLog::Read uses it, and so does `audit
/// verify`, which opens a store (read-only on SQLite) without taking it over.
[[nodiscard]] Result<std::vector<AuditRecord>> SelectAuditRecords(store::sql::Database& db, std::int64_t first = 1,
                                                                  std::int64_t last = 0, std::size_t limit = 0);
/// Every checkpoint of an audit store, in sequence order.
[[nodiscard]] Result<std::vector<AuditCheckpoint>> SelectAuditCheckpoints(store::sql::Database& db);

class AuditLog {
 public:
  struct Options {
    std::filesystem::path db_path;           // SQLite, when `db` is not given: created 0600 if missing
    /// The database of either backend (policy_database.h); may hold other tables too. On PostgreSQL
    /// several AuditLogs (processes) may append to one database: each append and checkpoint runs
    /// under lock_key::kAuditChain, so the chain stays one chain.
    std::shared_ptr<store::sql::Database> db;
    std::filesystem::path signing_key_path;  // Ed25519 secret key, created 0600 (and <path>.pub) if missing
    std::int64_t checkpoint_every_records = 1000;
    std::chrono::seconds checkpoint_every{60};
    /// When true a thread signs a checkpoint once `checkpoint_every` has passed with records not yet
    /// covered; otherwise the owner calls CheckpointIfDue from its own timer.
    bool checkpoint_timer = true;
    std::optional<AuditSyslogOptions> syslog;
    const Clock* clock = &SystemClock::Instance();
  };

  /// Opens (creating) the log's tables and its signing key. Fails on an unreadable or insecure key.
  [[nodiscard]] static Result<std::unique_ptr<AuditLog>> Open(Options options);
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;

  /// Appends one record written now (time_ms = now when 0). Returns it as stored (sequence, hashes).
  /// A record_id already in the log returns the stored record instead and appends nothing.
  /// Thread-safe; the sequence, the chain and a due checkpoint are written in one transaction.
  [[nodiscard]] Result<AuditRecord> Append(AuditRecord record);

  struct Appended {
    std::int64_t sequence = 0;
    bool duplicate = false;  // the record_id was already in the log: nothing appended
  };
  /// Appends records delivered late (a gateway's cache): each keeps its own time_ms (which must be
  /// set), all in one transaction, in the given order. Records whose record_id is already in the log
  /// (a re-send after a lost reply) are skipped and answered with their stored sequence.
  [[nodiscard]] Result<std::vector<Appended>> AppendMany(std::vector<AuditRecord> records);

  /// Records with first <= sequence <= last (last 0 = to the end), in sequence order; at most `limit` (0 = all).
  [[nodiscard]] Result<std::vector<AuditRecord>> Read(std::int64_t first, std::int64_t last = 0,
                                                      std::size_t limit = 100000);
  [[nodiscard]] Result<std::vector<AuditCheckpoint>> Checkpoints();
  /// The last sequence number (0 when empty).
  [[nodiscard]] Result<std::int64_t> LastSequence();

  /// Signs a checkpoint at the last record now (nothing when it already has one). Returns its sequence.
  [[nodiscard]] Result<std::int64_t> Checkpoint();
  /// Signs one when `checkpoint_every` has passed since the last and records are not covered.
  [[nodiscard]] VoidResult CheckpointIfDue();

  std::span<const std::uint8_t, crypto::kSigningPublicKeyBytes> public_key() const {
    return key_.public_key;
  }
  /// Records the syslog forwarder dropped (queue full or server unreachable), for the stats.
  std::int64_t syslog_dropped() const;

 private:
  struct Impl;
  explicit AuditLog(std::unique_ptr<Impl> impl, crypto::SigningKeyPair key);
  std::unique_ptr<Impl> impl_;
  crypto::SigningKeyPair key_;
};

}  // namespace lifeline::policy

template <>
struct std::is_error_code_enum<lifeline::policy::AuditErrc> : std::true_type {};
