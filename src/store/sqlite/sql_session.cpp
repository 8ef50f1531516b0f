#include "store/sqlite/sql_session.h"

#include "common/log.h"
#include "store/sqlite/database.h"

#include <fmt/format.h>
#include <sqlite3.h>

#include <charconv>

namespace lifeline::store::sqlite {
namespace {

using sql::Errc;

class SqliteSession final : public sql::Session {
 public:
  explicit SqliteSession(std::unique_ptr<Database> db) : db_(std::move(db)) {}

  sql::Backend backend() const override { return sql::Backend::kSqlite; }

  Result<std::int64_t> ExecuteParams(std::string_view sql,
                                     std::span<const sql::Value> params) override {
    auto stmt = PrepareBound(sql, params);
    if (!stmt) {
      return stmt.error();
    }
    for (;;) {
      auto row = stmt->Step();
      if (!row) {
        return Failed(row.error());
      }
      if (!*row) {
        break;
      }
    }
    return stmt->ReadOnly() ? 0 : static_cast<std::int64_t>(db_->Changes());
  }

  Result<sql::Rows> QueryParams(std::string_view sql, std::span<const sql::Value> params) override {
    auto stmt = PrepareBound(sql, params);
    if (!stmt) {
      return stmt.error();
    }
    sql::Rows rows;
    for (;;) {
      auto row = stmt->Step();
      if (!row) {
        return Failed(row.error());
      }
      if (!*row) {
        return rows;
      }
      const int columns = stmt->ColumnCount();
      std::vector<sql::Row::Cell> cells;
      cells.reserve(static_cast<std::size_t>(columns));
      for (int c = 0; c < columns; ++c) {
        switch (stmt->TypeOf(c)) {
          case Statement::ColumnType::kInteger:
            cells.emplace_back(stmt->Int(c));
            break;
          case Statement::ColumnType::kReal:
            cells.emplace_back(stmt->Double(c));
            break;
          case Statement::ColumnType::kText:
          case Statement::ColumnType::kBlob:
            cells.emplace_back(stmt->Text(c));
            break;
          case Statement::ColumnType::kNull:
            cells.emplace_back(std::monostate());
            break;
        }
      }
      rows.emplace_back(std::move(cells));
    }
  }

  VoidResult ExecScript(std::string_view sql) override {
    if (auto ran = db_->Exec(sql); !ran) {
      return Failed(ran.error());
    }
    return {};
  }

  VoidResult Begin(sql::TxMode mode) override {
    // IMMEDIATE takes the write lock before the first read, so a read-then-write body never meets
    // another writer halfway (SQLite would answer BUSY instead of waiting).
    return ExecScript(mode == sql::TxMode::kWrite ? "BEGIN IMMEDIATE" : "BEGIN");
  }
  VoidResult Commit() override { return ExecScript("COMMIT"); }
  void Rollback() override {
    if (db_->InTransaction()) {
      if (auto rolled = db_->Exec("ROLLBACK"); !rolled) {
        log::Get("store")->warn("rollback on {} failed: {}", db_->path().string(), db_->LastErrorMessage());
      }
    }
  }
  bool Healthy() const override { return !db_->InTransaction(); }

 private:
  /// Prepares `sql` and binds `params` by their numbers: SQLite numbers $N parameters in order of
  /// first appearance, not by N, so each is looked up by name.
  Result<Statement> PrepareBound(std::string_view sql, std::span<const sql::Value> params) {
    auto stmt = db_->Prepare(sql);
    if (!stmt) {
      return Failed(stmt.error());
    }
    const int count = stmt->ParameterCount();
    for (int index = 1; index <= count; ++index) {
      const std::string name = stmt->ParameterName(index);
      std::size_t position = static_cast<std::size_t>(index);
      if (!name.empty()) {
        const char* digits = name.data() + 1;
        const auto [end, ec] = std::from_chars(digits, name.data() + name.size(), position);
        if (name[0] != '$' || ec != std::errc() || end != name.data() + name.size()) {
          return Misuse(fmt::format("parameter {} is not of the form $N", name));
        }
      }
      if (position == 0 || position > params.size()) {
        return Misuse(fmt::format("statement wants parameter ${}, {} given", position, params.size()));
      }
      const sql::Value& value = params[position - 1];
      if (value.is_null()) {
        stmt->Bind(index, std::nullopt);
      } else if (value.type() == sql::Type::kInt) {
        stmt->Bind(index, value.int_value());
      } else if (value.type() == sql::Type::kReal) {
        stmt->Bind(index, value.real_value());
      } else {
        stmt->Bind(index, value.text_value());
      }
    }
    return stmt;
  }

  /// Sorts a SQLite error into the seam's codes and keeps SQLite's message for the log.
  Failure Failed(const std::error_code& ec) {
    sql::SetLastErrorDetail("sqlite: " + db_->LastErrorMessage());
    const int primary = ec.category() == Category() ? ec.value() : SQLITE_ERROR;
    switch (primary) {
      case SQLITE_CONSTRAINT: {
        const int extended = db_->LastExtendedErrorCode();
        return Fail(extended == SQLITE_CONSTRAINT_UNIQUE || extended == SQLITE_CONSTRAINT_PRIMARYKEY
                        ? make_error_code(Errc::kUniqueViolation)
                        : make_error_code(Errc::kConstraintViolation));
      }
      case SQLITE_BUSY:
      case SQLITE_LOCKED:
        return Fail(make_error_code(Errc::kBusy));
      case SQLITE_CANTOPEN:
      case SQLITE_NOTADB:
        return Fail(make_error_code(Errc::kConnectionFailed));
      default:
        return Fail(make_error_code(Errc::kStatementFailed));
    }
  }

  static Failure Misuse(std::string detail) {
    sql::SetLastErrorDetail("sqlite: " + detail);
    return Fail(make_error_code(Errc::kStatementFailed));
  }

  std::unique_ptr<Database> db_;
};

}  // namespace

Result<std::shared_ptr<sql::Database>> OpenSqlDatabase(const std::filesystem::path& path) {
  auto connect = [path]() -> Result<std::unique_ptr<sql::Session>> {
    auto db = Database::Open(path);
    if (!db) {
      sql::SetLastErrorDetail(fmt::format("sqlite: cannot open {}: {}", path.string(), db.error().message()));
      return Fail(make_error_code(Errc::kConnectionFailed));
    }
    return std::unique_ptr<sql::Session>(new SqliteSession(std::move(*db)));
  };
  auto database = std::make_shared<sql::Database>(sql::Backend::kSqlite, std::move(connect), 1,
                                                  "SQLite " + path.string());
  // Open the file now, so a bad path fails here rather than at the first request.
  if (auto first = database->Acquire(); !first) {
    return first.error();
  }
  return database;
}

}  // namespace lifeline::store::sqlite
