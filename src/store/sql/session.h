#pragma once
// The driver-neutral SQL seam under the home's store: one connection (Session) that runs statements
// with positional parameters $1..$N and hands back owned rows. Drivers: store/sqlite/sql_session.h
// (over store/sqlite/database.h) and store/postgres/session.h (libpq). No driver handle appears here,
// so the store's logic is written once and runs on both (docs/architecture.md, "Store seam").
#include "common/result.h"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <variant>
#include <vector>

namespace lifeline::store::sql {

/// What went wrong in a driver, sorted the way callers decide on it (retry, map to a store error,
/// give up). The driver's own text for the last failure is in LastErrorDetail().
enum class Errc {
  kUniqueViolation = 1,   // a UNIQUE or PRIMARY KEY constraint refused the row
  kConstraintViolation,   // another constraint (foreign key, CHECK, NOT NULL)
  kSerializationFailure,  // PostgreSQL 40001: the transaction can be run again
  kDeadlock,              // PostgreSQL 40P01: chosen as the victim; can be run again
  kBusy,                  // SQLite BUSY/LOCKED after its busy timeout
  kConnectionFailed,      // cannot connect, or the connection was lost
  kStatementFailed,       // any other error the database reported (syntax, types, disk, ...)
  kPoolExhausted,         // no connection became free in time
  kSchemaTooNew,          // the database has migrations this build does not know
};

const char* Describe(Errc errc);
const std::error_category& ErrorCategory();
inline std::error_code make_error_code(Errc errc) { return {static_cast<int>(errc), ErrorCategory()}; }

/// True for failures that running the same transaction again can cure (serialization failure,
/// deadlock, busy). Database::Transaction retries these a bounded number of times.
bool IsRetryable(const std::error_code& ec);

/// The driver's message for the last error it returned on this thread (PostgreSQL's primary message
/// and detail, SQLite's sqlite3_errmsg), for log lines. Empty when the last error was not a driver's.
const std::string& LastErrorDetail();
/// Drivers call this when they return an error.
void SetLastErrorDetail(std::string detail);

enum class Backend { kSqlite, kPostgres };
std::string_view ToString(Backend backend);

/// The parameter types the seam binds. A null keeps its type so PostgreSQL can infer `$1 IS NULL`.
enum class Type { kInt, kReal, kText };

/// One bound parameter.
class Value {
 public:
  Value(std::int64_t v) : type_(Type::kInt), int_(v) {}  // NOLINT: implicit by design, as in Exec(sql, 1, "x")
  Value(int v) : Value(static_cast<std::int64_t>(v)) {}  // NOLINT
  Value(double v) : type_(Type::kReal), real_(v) {}      // NOLINT
  Value(std::string_view v) : type_(Type::kText), text_(v) {}  // NOLINT
  Value(const std::string& v) : Value(std::string_view(v)) {}  // NOLINT
  Value(const char* v) : Value(std::string_view(v)) {}         // NOLINT
  Value(bool) = delete;  // store flags as 0/1 explicitly; no silent int conversion
  /// A typed NULL.
  static Value Null(Type type) {
    Value v(std::int64_t{0});
    v.type_ = type;
    v.null_ = true;
    return v;
  }
  template <class T>
  Value(const std::optional<T>& v)  // NOLINT
      : Value(v ? Value(*v) : Null(TypeOf<T>())) {}

  Type type() const { return type_; }
  bool is_null() const { return null_; }
  std::int64_t int_value() const { return int_; }
  double real_value() const { return real_; }
  std::string_view text_value() const { return text_; }

 private:
  template <class T>
  static constexpr Type TypeOf() {
    if constexpr (std::is_floating_point_v<T>) {
      return Type::kReal;
    } else if constexpr (std::is_integral_v<T>) {
      return Type::kInt;
    } else {
      return Type::kText;
    }
  }
  Type type_;
  bool null_ = false;
  std::int64_t int_ = 0;
  double real_ = 0;
  std::string_view text_;  // the caller's text; Values live only for the duration of one call
};

/// One result row; owns its cells. Column indexes follow the SELECT list, from 0.
class Row {
 public:
  using Cell = std::variant<std::monostate, std::int64_t, double, std::string>;
  explicit Row(std::vector<Cell> cells) : cells_(std::move(cells)) {}

  std::size_t size() const { return cells_.size(); }
  bool IsNull(std::size_t column) const;
  /// The integer in `column`; text that is not a number (or NULL) reads as 0, as SQLite's own
  /// column accessors do. Read only integer columns with it.
  std::int64_t Int(std::size_t column) const;
  std::optional<std::int64_t> OptionalInt(std::size_t column) const;
  double Real(std::size_t column) const;
  /// The text in `column`; NULL reads as "".
  std::string Text(std::size_t column) const;
  std::optional<std::string> OptionalText(std::size_t column) const;

 private:
  std::vector<Cell> cells_;
};

using Rows = std::vector<Row>;

/// How a transaction begins. kWrite takes the write lock up front on SQLite (BEGIN IMMEDIATE) and
/// runs READ COMMITTED on PostgreSQL, where the store's statements lock what they change. kSnapshot is
/// a read-only transaction whose statements all see one snapshot (PostgreSQL REPEATABLE READ).
enum class TxMode { kWrite, kSnapshot };

/// One database connection. Not thread-safe: a Session belongs to one caller at a time (the pool in
/// sql::Database hands it out). SQL is written once for both backends (docs/architecture.md):
/// parameters are $1..$N (a number may repeat), and rows come back as owned Row values.
class Session {
 public:
  virtual ~Session() = default;

  virtual Backend backend() const = 0;

  /// Runs one statement; returns the number of rows it changed (0 for statements that change none).
  [[nodiscard]] virtual Result<std::int64_t> ExecuteParams(std::string_view sql,
                                                           std::span<const Value> params) = 0;
  /// Runs one statement and returns every row it yields.
  [[nodiscard]] virtual Result<Rows> QueryParams(std::string_view sql,
                                                 std::span<const Value> params) = 0;
  /// Runs a script of several statements without parameters (migrations).
  [[nodiscard]] virtual VoidResult ExecScript(std::string_view sql) = 0;

  [[nodiscard]] virtual VoidResult Begin(TxMode mode) = 0;
  [[nodiscard]] virtual VoidResult Commit() = 0;
  /// Rolls back the open transaction, if any; errors are only logged (the connection may be gone).
  virtual void Rollback() = 0;
  /// False once the connection is known to be unusable; the pool then drops it.
  virtual bool Healthy() const = 0;
  /// True while a transaction is open. After an error inside one it tells whether the database
  /// kept it (SQLite rolls the whole transaction back by itself on some errors: full disk, I/O).
  virtual bool InTransaction() const = 0;

  template <class... Args>
  [[nodiscard]] Result<std::int64_t> Exec(std::string_view sql, const Args&... args) {
    const Value params[] = {Value(args)..., Value(std::int64_t{0})};  // trailing one: no zero-size array
    return ExecuteParams(sql, std::span<const Value>(params, sizeof...(Args)));
  }
  template <class... Args>
  [[nodiscard]] Result<Rows> Query(std::string_view sql, const Args&... args) {
    const Value params[] = {Value(args)..., Value(std::int64_t{0})};
    return QueryParams(sql, std::span<const Value>(params, sizeof...(Args)));
  }
  /// The first row, or nullopt when the statement yields none.
  template <class... Args>
  [[nodiscard]] Result<std::optional<Row>> QueryRow(std::string_view sql, const Args&... args) {
    auto rows = Query(sql, args...);
    if (!rows) {
      return rows.error();
    }
    if (rows->empty()) {
      return std::optional<Row>();
    }
    return std::optional<Row>(std::move(rows->front()));
  }
};

}  // namespace lifeline::store::sql

template <>
struct std::is_error_code_enum<lifeline::store::sql::Errc> : std::true_type {};
