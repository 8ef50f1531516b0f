#pragma once
// Verification of an audit log, online (its store: SQLite or PostgreSQL) or offline (a JSON-lines export), against
// the public key the auditor trusts (never one read from the log). See docs/policy.md "Audit log".
#include <array>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "crypto/keys.h"
#include "policy/audit_log.h"

namespace lifeline::policy {

enum class AuditProblem {
  kChanged,                 // a record's content no longer matches its hash
  kRemoved,                 // a sequence number is missing
  kReordered,               // a record is out of place (moved in an export, or renumbered in the store)
  kDuplicate,               // a sequence number appears twice
  kChainBroken,             // a record's prev_hash is not its predecessor's hash (re-hashed change)
  kBadCheckpointSignature,  // a checkpoint's signature does not verify with the public key
  kCheckpointMismatch,      // a validly signed checkpoint names a hash the log no longer has
  kMalformed,               // an export line that is not a record or a checkpoint
  kUncheckpointedTail,      // warning: records after the last checkpoint are only chain-protected
};
const char* ToString(AuditProblem problem);

struct AuditFinding {
  AuditProblem problem;
  std::int64_t sequence = 0;  // the record or checkpoint concerned (export: line number for kMalformed)
  std::string what;           // one sentence for the auditor
  bool IsWarning() const { return problem == AuditProblem::kUncheckpointedTail; }
};

struct AuditVerifyReport {
  std::int64_t records = 0;
  std::int64_t checkpoints = 0;
  std::int64_t last_checkpoint = 0;  // highest validly signed checkpoint's sequence (0 = none)
  std::vector<AuditFinding> findings;
  /// True when nothing but warnings was found: the log is untouched.
  bool Ok() const;
  /// One line per finding ("ERROR seq 7 changed: ..."), then a summary line.
  std::string Render() const;
};

/// Checks records (in the order the store or the file presents them) and checkpoints.
AuditVerifyReport VerifyAudit(const std::vector<AuditRecord>& records,
                              const std::vector<AuditCheckpoint>& checkpoints,
                              std::span<const std::uint8_t, crypto::kSigningPublicKeyBytes> public_key);

/// Reads the log's tables (SQLite file, opened read-only) and verifies them.
[[nodiscard]] Result<AuditVerifyReport> VerifyAuditStore(
    const std::filesystem::path& db_path,
    std::span<const std::uint8_t, crypto::kSigningPublicKeyBytes> public_key);
/// Verifies a JSON-lines export (bad lines become kMalformed findings).
[[nodiscard]] Result<AuditVerifyReport> VerifyAuditExport(
    const std::filesystem::path& jsonl_path,
    std::span<const std::uint8_t, crypto::kSigningPublicKeyBytes> public_key);

/// The same on an open database of either backend (policy_database.h), beside running writers.
[[nodiscard]] Result<AuditVerifyReport> VerifyAuditStore(
    store::sql::Database& db, std::span<const std::uint8_t, crypto::kSigningPublicKeyBytes> public_key);

/// The stored log in sequence order (read-only), for export and verification.
[[nodiscard]] Result<std::vector<AuditRecord>> ReadAuditRecords(const std::filesystem::path& db_path);
[[nodiscard]] Result<std::vector<AuditCheckpoint>> ReadAuditCheckpoints(
    const std::filesystem::path& db_path);

}  // namespace lifeline::policy
