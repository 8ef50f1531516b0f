#pragma once
// Versioned schema migrations on either backend. The version lives in a one-row table
// schema_version; step i moves the schema from version i to i+1 and runs in its own transaction
// together with the version bump, so a crash leaves a whole step or none. On PostgreSQL each step
// first takes a transaction-scoped advisory lock, so homes starting at once against one database
// migrate one after the other (the second finds the work done).
#include "common/result.h"
#include "store/sql/database.h"

#include <cstdint>
#include <span>
#include <string_view>

namespace lifeline::store::sql {

/// One step, written for each backend (DDL is where the dialects differ: types, identity columns,
/// sequences). Never edit a shipped step: append a new one.
struct Migration {
  std::string_view sqlite;
  std::string_view postgres;
};

/// Brings the schema to the newest version. `lock_key` names the advisory lock on PostgreSQL (one
/// per schema family). A SQLite file from before schema_version existed is adopted at its
/// PRAGMA user_version. Errors: kSchemaTooNew when the database is ahead of `steps`.
[[nodiscard]] VoidResult Migrate(Database& db, std::span<const Migration> steps, std::int64_t lock_key);

/// The schema version recorded in the database (0 when none).
[[nodiscard]] Result<std::int64_t> SchemaVersion(Database& db);

}  // namespace lifeline::store::sql
