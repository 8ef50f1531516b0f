#pragma once
// The SQLite driver of the SQL seam (store/sql/session.h), over store/sqlite/database.h.
#include "common/result.h"
#include "store/sql/database.h"

#include <filesystem>
#include <memory>

namespace lifeline::store::sqlite {

/// A sql::Database on one SQLite file (created if missing; WAL, synchronous=FULL). It holds a single
/// connection: SQLite runs one writer at a time anyway, and callers of the pool wait their turn
/// instead of meeting SQLITE_BUSY. Fails when the file cannot be opened.
[[nodiscard]] Result<std::shared_ptr<sql::Database>> OpenSqlDatabase(const std::filesystem::path& path);

}  // namespace lifeline::store::sqlite
