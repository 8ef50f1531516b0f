#pragma once
// Where the policy manager keeps its data (policy.toml [store]), on the driver-neutral SQL seam
// (store/sql): users and tokens (policy_store.h), policy versions (policy_sets.h), approval requests
// (approvals.h) and the audit log (audit_log.h) are written once and run on SQLite or PostgreSQL.
//
//  - SQLite (the default): data_dir/policy.db (store.path) for everything but the audit log, which
//    keeps its own file data_dir/audit.db; both are created 0600 (password hashes, the audit trail).
//  - PostgreSQL: one database (store.postgresql.url) holds every table, so several policy-manager
//    processes (and the CLI beside them) may share it. Writes whose correctness depends on what the
//    others wrote (the audit chain's next sequence and hash, the next policy version, the approvals'
//    decision sequence) take a transaction-scoped advisory lock first (LockForWrite).
#include "common/result.h"
#include "store/sql/database.h"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string_view>

namespace lifeline::policy {

struct PolicyConfig;

/// The databases one policy manager uses. On PostgreSQL both point at the same pool.
struct PolicyDatabases {
  std::shared_ptr<store::sql::Database> store;  // users, tokens, policy versions, approval requests
  std::shared_ptr<store::sql::Database> audit;  // audit records and checkpoints
};

/// Opens what `config` names. One log line on failure that names the database (the SQLite file, or
/// "store.postgresql.url" and the server's reason without the connection string, which may hold a
/// password). Without `open_audit` the SQLite audit.db is left alone (`audit` stays null; on
/// PostgreSQL it is the store's pool anyway): for CLI commands that do not write the audit log, or
/// that open it themselves and only warn when they cannot.
[[nodiscard]] Result<PolicyDatabases> OpenPolicyDatabases(const PolicyConfig& config, bool open_audit = true);

/// The audit log's database for tools that only read it (`lifeline audit verify|export --config`):
/// the SQLite file opened read-only (ENOENT when missing, never created), or the PostgreSQL database.
[[nodiscard]] Result<std::shared_ptr<store::sql::Database>> OpenPolicyAuditForReading(const PolicyConfig& config);

/// A SQLite file of the policy manager: created 0600 (in a 0700 directory when it has to make one).
[[nodiscard]] Result<std::shared_ptr<store::sql::Database>> OpenPolicySqlite(const std::filesystem::path& path);

/// The advisory-lock keys (PostgreSQL) of the writes that must not interleave between processes.
namespace lock_key {
inline constexpr std::int64_t kAuditChain = 0x4c4c'4155'4449'5401;  // appends and checkpoints
inline constexpr std::int64_t kPolicyVersions = 0x4c4c'504f'4c49'4302;
inline constexpr std::int64_t kApprovals = 0x4c4c'4150'5052'5603;
inline constexpr std::int64_t kSchema = 0x4c4c'5343'4845'4d04;  // table creation and migrations
}  // namespace lock_key

/// Inside a write transaction: on PostgreSQL waits for (and holds until commit or rollback) the
/// advisory lock `key`, so the same kind of write in another process runs strictly before or after
/// this one and sees its result. On SQLite nothing: BEGIN IMMEDIATE already holds the file's single
/// write lock.
[[nodiscard]] VoidResult LockForWrite(store::sql::Session& session, std::int64_t key);

/// Runs idempotent DDL (CREATE ... IF NOT EXISTS) for the backend at hand in one transaction, under
/// lock_key::kSchema on PostgreSQL so processes starting at once do not race on the catalog. Logs
/// one line naming `what` on failure.
[[nodiscard]] VoidResult EnsureTables(store::sql::Database& db, std::string_view sqlite_ddl,
                                      std::string_view postgres_ddl, std::string_view what);

/// `given` when set, else the SQLite file at `sqlite_path` (OpenPolicySqlite); either way with its
/// tables made (EnsureTables).
[[nodiscard]] Result<std::shared_ptr<store::sql::Database>> OpenWithTables(
    std::shared_ptr<store::sql::Database> given, const std::filesystem::path& sqlite_path,
    std::string_view sqlite_ddl, std::string_view postgres_ddl, std::string_view what);

}  // namespace lifeline::policy
