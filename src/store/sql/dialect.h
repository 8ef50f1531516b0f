#pragma once
// The few places where SQL for SQLite and PostgreSQL cannot be the same text. Everything else is
// written once (docs/architecture.md, "Store seam": the dialect rules).
#include "store/sql/session.h"

#include <string_view>

namespace lifeline::store::sql {

/// Chooses the statement for the backend at hand.
inline std::string_view Pick(Backend backend, std::string_view sqlite, std::string_view postgres) {
  return backend == Backend::kSqlite ? sqlite : postgres;
}

/// Appended to a SELECT whose rows the transaction goes on to change: " FOR UPDATE" on PostgreSQL
/// (row locks, so a concurrent home waits and then sees the change), "" on SQLite, whose
/// BEGIN IMMEDIATE already holds the database's single write lock.
inline std::string_view ForUpdate(Backend backend) { return Pick(backend, "", " FOR UPDATE"); }

/// Like ForUpdate, for work queues: rows another transaction holds are passed over instead of waited
/// for. `of` names the table (or alias) whose rows are locked in a join.
inline std::string ForUpdateSkipLocked(Backend backend, std::string_view of) {
  return backend == Backend::kSqlite ? std::string() : " FOR UPDATE OF " + std::string(of) + " SKIP LOCKED";
}

}  // namespace lifeline::store::sql
