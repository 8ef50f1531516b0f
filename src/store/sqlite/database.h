#pragma once
// A thin RAII layer over SQLite shared by the agent's queue and the home's store. It keeps sqlite3* out of
// every other header, turns SQLite result codes into std::error_code, and runs transactions that roll back
// when the body returns an error. Durability: WAL with synchronous=FULL, so a COMMIT that returned is on disk.
#include "common/result.h"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

struct sqlite3;
struct sqlite3_stmt;

namespace lifeline::store::sqlite {

/// The std::error_category for SQLite primary result codes (SQLITE_BUSY, SQLITE_CONSTRAINT, ...).
const std::error_category& Category();
std::error_code MakeError(int sqlite_code);

class Statement {
 public:
  Statement(Statement&&) noexcept;
  Statement& operator=(Statement&&) noexcept;
  Statement(const Statement&) = delete;
  ~Statement();

  Statement& Bind(int index, std::int64_t value);
  Statement& Bind(int index, int value) { return Bind(index, static_cast<std::int64_t>(value)); }
  Statement& Bind(int index, double value);
  Statement& Bind(int index, std::string_view text);
  Statement& Bind(int index, const std::string& text) { return Bind(index, std::string_view(text)); }
  Statement& Bind(int index, const char* text) { return Bind(index, std::string_view(text)); }
  Statement& Bind(int index, std::nullopt_t);
  /// Binds text without copying it: SQLite reads it in place, so it must stay alive and unchanged
  /// until the statement is Reset (for statements reused from a cache, where the copy Bind makes is
  /// a malloc per parameter per row).
  Statement& BindView(int index, std::string_view text);
  Statement& BindBlob(int index, std::span<const std::uint8_t> bytes);
  template <class T>
  Statement& Bind(int index, const std::optional<T>& value) {
    return value ? Bind(index, *value) : Bind(index, std::nullopt);
  }
  /// Binds every argument in order, starting at parameter 1.
  template <class... Args>
  Statement& BindAll(const Args&... args) {
    int index = 0;
    (Bind(++index, args), ...);
    return *this;
  }

  /// Advances: true when a row is available, false when done.
  [[nodiscard]] Result<bool> Step();
  /// Runs a statement that returns no rows.
  [[nodiscard]] VoidResult Run();
  void Reset();

  std::int64_t Int(int column) const;
  double Double(int column) const;
  std::string Text(int column) const;
  std::vector<std::uint8_t> Blob(int column) const;
  bool IsNull(int column) const;

  /// For drivers that bind by name (store/sqlite/sql_session): the number of parameters, the name
  /// of parameter `index` ("$1", ":x"; "" for a plain ?), the result's columns and their types.
  int ParameterCount() const;
  std::string ParameterName(int index) const;
  int ColumnCount() const;
  enum class ColumnType { kInteger, kReal, kText, kBlob, kNull };
  ColumnType TypeOf(int column) const;
  /// True when the statement cannot change the database (a SELECT).
  bool ReadOnly() const;

 private:
  friend class Database;
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
  std::error_code bind_error_;
};

class Database {
 public:
  struct Options {
    int busy_timeout_ms = 5000;
    bool read_only = false;
    /// Holds secrets or an audit trail: the file (and a missing parent directory) are created
    /// readable by the owner only (0600, 0700) before SQLite opens it; SQLite would follow the
    /// umask, and its -wal and -shm files take the database file's mode.
    bool private_file = false;
  };

  /// Opens (creating if needed) the database file in WAL mode with synchronous=FULL and foreign keys on.
  [[nodiscard]] static Result<std::unique_ptr<Database>> Open(const std::filesystem::path& path,
                                                              Options options);
  [[nodiscard]] static Result<std::unique_ptr<Database>> Open(const std::filesystem::path& path) {
    return Open(path, Options{});
  }
  ~Database();
  Database(const Database&) = delete;

  [[nodiscard]] VoidResult Exec(std::string_view sql);
  [[nodiscard]] Result<Statement> Prepare(std::string_view sql);
  /// Prepares a statement that will be kept and run many times (a driver's statement cache):
  /// SQLITE_PREPARE_PERSISTENT, so SQLite does not spend its small lookaside memory on it.
  [[nodiscard]] Result<Statement> PreparePersistent(std::string_view sql);

  /// Brings the schema to the newest version: `steps[i]` moves it from version i to i+1 (PRAGMA
  /// user_version). Each step runs in its own transaction.
  [[nodiscard]] VoidResult Migrate(std::span<const std::string_view> steps);

  /// Runs `body` between BEGIN IMMEDIATE and COMMIT; rolls back if it returns an error.
  template <class Body>
  auto Transaction(Body&& body) -> decltype(body()) {
    if (auto begun = Exec("BEGIN IMMEDIATE"); !begun) {
      return begun.error();
    }
    auto result = body();
    if (!result) {
      (void)Exec("ROLLBACK");
      return result;
    }
    if (auto committed = Exec("COMMIT"); !committed) {
      (void)Exec("ROLLBACK");
      return committed.error();
    }
    return result;
  }

  std::int64_t LastInsertRowId() const;
  int Changes() const;
  /// The last error message SQLite reported on this connection, for log lines.
  std::string LastErrorMessage() const;
  /// The extended result code of the last error (SQLITE_CONSTRAINT_UNIQUE, ...), for drivers that
  /// sort constraint failures.
  int LastExtendedErrorCode() const;
  /// True while a transaction is open on this connection.
  bool InTransaction() const;
  const std::filesystem::path& path() const { return path_; }

 private:
  Database(sqlite3* db, std::filesystem::path path) : db_(db), path_(std::move(path)) {}
  sqlite3* db_;
  std::filesystem::path path_;
};

}  // namespace lifeline::store::sqlite
