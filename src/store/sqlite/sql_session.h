#pragma once
// The SQLite driver of the SQL seam (store/sql/session.h), over store/sqlite/database.h.
#include "common/result.h"
#include "store/sql/database.h"
#include "store/sqlite/database.h"

#include <filesystem>
#include <memory>

namespace lifeline::store::sqlite {

/// A sql::Database on one SQLite file (created if missing; WAL, synchronous=FULL). It holds a single
/// connection: SQLite runs one writer at a time anyway, and callers of the pool wait their turn
/// instead of meeting SQLITE_BUSY. Fails when the file cannot be opened.
[[nodiscard]] Result<std::shared_ptr<sql::Database>> OpenSqlDatabase(const std::filesystem::path& path);
/// The same with the connection's options: `private_file` for files holding secrets or an audit
/// trail (0600, see Database::Options), `read_only` for tools that only look.
[[nodiscard]] Result<std::shared_ptr<sql::Database>> OpenSqlDatabase(const std::filesystem::path& path,
                                                                     Database::Options options);

}  // namespace lifeline::store::sqlite
