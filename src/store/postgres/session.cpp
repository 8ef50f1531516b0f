#include "store/postgres/session.h"

#include "common/log.h"

#include <fmt/format.h>
#include <libpq-fe.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <span>
#include <string>
#include <unordered_map>

namespace lifeline::store::postgres {
namespace {

using sql::Errc;

// Built-in type OIDs (pg_type.dat); libpq-dev does not ship the server's catalog headers.
constexpr Oid kInt8Oid = 20;
constexpr Oid kFloat8Oid = 701;
constexpr Oid kTextOid = 25;

std::shared_ptr<spdlog::logger> Logger() {
  static const auto logger = log::Get("store");
  return logger;
}

/// PostgreSQL text cannot hold U+0000 (and libpq passes text parameters as C strings, which would cut
/// it short). Device-supplied text may carry one, so it becomes U+FFFD rather than failing the batch.
std::string TextParameter(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\0') {
      out += "\xEF\xBF\xBD";
    } else {
      out += c;
    }
  }
  return out;
}

/// libpq's messages span lines ("...failed: Connection refused\n\tIs the server running..."); a log
/// line should not.
std::string OneLine(std::string_view text) {
  std::string out;
  bool space = false;
  for (char c : text) {
    if (c == '\n' || c == '\t' || c == '\r' || c == ' ') {
      space = !out.empty();
      continue;
    }
    if (space) {
      out += ' ';
      space = false;
    }
    out += c;
  }
  return out;
}

struct ResultDeleter {
  void operator()(PGresult* result) const { PQclear(result); }
};
using ResultPtr = std::unique_ptr<PGresult, ResultDeleter>;

class PgSession final : public sql::Session {
 public:
  explicit PgSession(PGconn* conn) : conn_(conn) {}
  ~PgSession() override { PQfinish(conn_); }

  sql::Backend backend() const override { return sql::Backend::kPostgres; }

  Result<std::int64_t> ExecuteParams(std::string_view sql, std::span<const sql::Value> params) override {
    auto result = Run(sql, params);
    if (!result) {
      return result.error();
    }
    const char* tuples = PQcmdTuples(result->get());
    return tuples == nullptr || *tuples == '\0' ? 0 : std::strtoll(tuples, nullptr, 10);
  }

  Result<sql::Rows> QueryParams(std::string_view sql, std::span<const sql::Value> params) override {
    auto result = Run(sql, params);
    if (!result) {
      return result.error();
    }
    PGresult* res = result->get();
    const int rows = PQntuples(res);
    const int columns = PQnfields(res);
    sql::Rows out;
    out.reserve(static_cast<std::size_t>(rows));
    for (int r = 0; r < rows; ++r) {
      std::vector<sql::Row::Cell> cells;
      cells.reserve(static_cast<std::size_t>(columns));
      for (int c = 0; c < columns; ++c) {
        if (PQgetisnull(res, r, c)) {
          cells.emplace_back(std::monostate());
        } else {
          cells.emplace_back(std::string(PQgetvalue(res, r, c), static_cast<std::size_t>(PQgetlength(res, r, c))));
        }
      }
      out.emplace_back(std::move(cells));
    }
    return out;
  }

  VoidResult ExecScript(std::string_view sql) override {
    // PQexec runs several statements separated by semicolons; PQexecParams would not.
    const std::string text(sql);
    ResultPtr result(PQexec(conn_, text.c_str()));
    if (auto checked = Check(result.get()); !checked) {
      return checked.error();
    }
    return {};
  }

  VoidResult Begin(sql::TxMode mode) override {
    return ExecScript(mode == sql::TxMode::kWrite ? "BEGIN"
                                                   : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
  }

  VoidResult Commit() override {
    ResultPtr result(PQexec(conn_, "COMMIT"));
    if (auto checked = Check(result.get()); !checked) {
      return checked.error();
    }
    // COMMIT of a transaction that already failed answers ROLLBACK without an error: report it, or a
    // caller that swallowed an error would take the rollback for a commit.
    if (std::strcmp(PQcmdStatus(result.get()), "ROLLBACK") == 0) {
      sql::SetLastErrorDetail("postgresql: the transaction had failed and was rolled back");
      return make_error_code(Errc::kStatementFailed);
    }
    return {};
  }

  void Rollback() override {
    if (PQtransactionStatus(conn_) == PQTRANS_IDLE || PQstatus(conn_) != CONNECTION_OK) {
      return;
    }
    ResultPtr result(PQexec(conn_, "ROLLBACK"));
    if (PQresultStatus(result.get()) != PGRES_COMMAND_OK) {
      Logger()->warn("rollback failed: {}", PQerrorMessage(conn_));
    }
  }

  bool Healthy() const override {
    return PQstatus(conn_) == CONNECTION_OK && PQtransactionStatus(conn_) == PQTRANS_IDLE;
  }

  bool InTransaction() const override {
    const PGTransactionStatusType status = PQtransactionStatus(conn_);
    return status != PQTRANS_IDLE && status != PQTRANS_UNKNOWN;
  }

  PGconn* conn() const { return conn_; }

 private:
  Result<ResultPtr> Run(std::string_view sql, std::span<const sql::Value> params) {
    std::vector<std::string> texts(params.size());
    std::vector<const char*> values(params.size(), nullptr);
    std::vector<Oid> types(params.size(), kTextOid);
    for (std::size_t i = 0; i < params.size(); ++i) {
      const sql::Value& value = params[i];
      switch (value.type()) {
        case sql::Type::kInt:
          types[i] = kInt8Oid;
          if (!value.is_null()) {
            texts[i] = std::to_string(value.int_value());
          }
          break;
        case sql::Type::kReal:
          types[i] = kFloat8Oid;
          if (!value.is_null()) {
            texts[i] = fmt::format("{}", value.real_value());
          }
          break;
        case sql::Type::kText:
          types[i] = kTextOid;
          if (!value.is_null()) {
            texts[i] = TextParameter(value.text_value());
          }
          break;
      }
      values[i] = value.is_null() ? nullptr : texts[i].c_str();
    }
    for (int attempt = 1;; ++attempt) {
      auto name = Prepared(sql, types);
      if (!name) {
        return name.error();
      }
      ResultPtr result(PQexecPrepared(conn_, (*name)->c_str(), static_cast<int>(params.size()), values.data(),
                                      nullptr, nullptr, /*resultFormat=text*/ 0));
      if (auto checked = Check(result.get()); !checked) {
        const char* state = result ? PQresultErrorField(result.get(), PG_DIAG_SQLSTATE) : nullptr;
        if (state != nullptr && std::strcmp(state, "0A000") == 0) {
          // "cached plan must not change result type": the schema changed under the statement since
          // it was prepared. Forget it (its server-side copy stays until the connection closes; its
          // name is never reused) and, outside a transaction, where nothing was lost, prepare it
          // again. Inside one the transaction has failed and its caller decides.
          Forget(sql, types);
          if (attempt == 1 && PQtransactionStatus(conn_) == PQTRANS_IDLE) {
            continue;
          }
        }
        return checked.error();
      }
      return result;
    }
  }

  /// The server-side prepared statement for `sql` with these parameter types, prepared on first use
  /// on this connection: later runs skip the parse and, once PostgreSQL settles on a generic plan,
  /// the planning. Keyed by the types too, since they are part of what was prepared.
  Result<const std::string*> Prepared(std::string_view sql, std::span<const Oid> types) {
    MakeKey(sql, types);
    ++uses_;
    if (auto it = prepared_.find(key_); it != prepared_.end()) {
      it->second.last_used = uses_;
      return &it->second.name;
    }
    std::string name = fmt::format("lifeline_{}", ++names_);
    const std::string text(sql);
    ResultPtr result(PQprepare(conn_, name.c_str(), text.c_str(), static_cast<int>(types.size()), types.data()));
    if (auto checked = Check(result.get()); !checked) {
      return checked.error();
    }
    if (prepared_.size() >= kCacheCapacity) {
      auto oldest = std::min_element(prepared_.begin(), prepared_.end(), [](const auto& a, const auto& b) {
        return a.second.last_used < b.second.last_used;
      });
      // Not transactional, and allowed inside a transaction that has not failed (the PQprepare just
      // above succeeded, so this one has not).
      ResultPtr freed(PQexec(conn_, ("DEALLOCATE " + oldest->second.name).c_str()));
      if (PQresultStatus(freed.get()) != PGRES_COMMAND_OK) {
        Logger()->warn("cannot deallocate a cached statement: {}", OneLine(PQerrorMessage(conn_)));
      }
      prepared_.erase(oldest);
    }
    return &prepared_.emplace(key_, PreparedStatement{std::move(name), uses_}).first->second.name;
  }

  void Forget(std::string_view sql, std::span<const Oid> types) {
    MakeKey(sql, types);
    if (auto it = prepared_.find(key_); it != prepared_.end()) {
      prepared_.erase(it);
    }
  }

  /// key_ = the parameter types, then the text (reusing key_'s buffer).
  void MakeKey(std::string_view sql, std::span<const Oid> types) {
    key_.clear();
    for (Oid type : types) {
      key_ += type == kInt8Oid ? 'i' : type == kFloat8Oid ? 'r' : 't';
    }
    key_ += '|';
    key_ += sql;
  }

  /// Sorts a failed result by SQLSTATE into the seam's codes; keeps the server's message.
  VoidResult Check(PGresult* result) {
    const ExecStatusType status = result == nullptr ? PGRES_FATAL_ERROR : PQresultStatus(result);
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK || status == PGRES_EMPTY_QUERY) {
      return {};
    }
    const char* primary = result ? PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
    const char* detail = result ? PQresultErrorField(result, PG_DIAG_MESSAGE_DETAIL) : nullptr;
    const char* state = result ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
    std::string message = OneLine(primary != nullptr ? primary : PQerrorMessage(conn_));
    if (detail != nullptr) {
      message += fmt::format(" ({})", detail);
    }
    const std::string_view code = state != nullptr ? state : "";
    sql::SetLastErrorDetail(fmt::format("postgresql{}: {}", code.empty() ? "" : " " + std::string(code), message));
    if (PQstatus(conn_) != CONNECTION_OK || code.starts_with("08") || code == "57P01" || code == "57P02" ||
        code == "57P03") {
      return make_error_code(Errc::kConnectionFailed);
    }
    if (code == "23505") {
      return make_error_code(Errc::kUniqueViolation);
    }
    if (code.starts_with("23")) {
      return make_error_code(Errc::kConstraintViolation);
    }
    if (code == "40001") {
      return make_error_code(Errc::kSerializationFailure);
    }
    if (code == "40P01") {
      return make_error_code(Errc::kDeadlock);
    }
    if (code == "55P03") {
      return make_error_code(Errc::kBusy);
    }
    return make_error_code(Errc::kStatementFailed);
  }

  struct PreparedStatement {
    std::string name;
    std::uint64_t last_used = 0;
  };
  struct KeyHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view key) const { return std::hash<std::string_view>()(key); }
  };
  /// Enough for every statement the store writes; the bound only matters for a caller that builds
  /// texts without end.
  static constexpr std::size_t kCacheCapacity = 256;

  PGconn* conn_;
  std::unordered_map<std::string, PreparedStatement, KeyHash, std::equal_to<>> prepared_;
  std::string key_;
  std::uint64_t uses_ = 0;
  std::uint64_t names_ = 0;
};

void QuietNotice(void* /*arg*/, const char* message) {
  // "relation already exists, skipping" and the like: not worth an operator's attention.
  Logger()->debug("postgresql notice: {}", message);
}

Result<std::unique_ptr<sql::Session>> Connect(const Options& options) {
  // dbname comes last and is expanded as a connection string: what it sets wins over the defaults
  // before it.
  const std::string timeout = std::to_string(options.connect_timeout.count());
  const char* keywords[] = {"application_name", "connect_timeout", "dbname", nullptr};
  const char* values[] = {options.application_name.c_str(), timeout.c_str(), options.conninfo.c_str(),
                          nullptr};
  PGconn* conn = PQconnectdbParams(keywords, values, /*expand_dbname=*/1);
  if (conn == nullptr) {
    sql::SetLastErrorDetail("postgresql: out of memory");
    return Fail(make_error_code(Errc::kConnectionFailed));
  }
  if (PQstatus(conn) != CONNECTION_OK) {
    const std::string message = OneLine(PQerrorMessage(conn));
    PQfinish(conn);
    sql::SetLastErrorDetail("postgresql: " + message);
    return Fail(make_error_code(Errc::kConnectionFailed));
  }
  PQsetNoticeProcessor(conn, &QuietNotice, nullptr);
  return std::unique_ptr<sql::Session>(new PgSession(conn));
}

}  // namespace

Result<std::shared_ptr<sql::Database>> Open(const Options& options) {
  auto first = Connect(options);
  if (!first) {
    return first.error();
  }
  // Name the server by what libpq resolved, never by the connection string (it may hold a password).
  PGconn* conn = static_cast<PgSession*>(first->get())->conn();
  const std::string description = fmt::format("PostgreSQL database '{}' on {}:{} as '{}'", PQdb(conn),
                                              PQhost(conn), PQport(conn), PQuser(conn));
  auto database = std::make_shared<sql::Database>(
      sql::Backend::kPostgres, [options]() { return Connect(options); }, options.pool_size, description);
  database->Adopt(std::move(*first));
  return database;
}

}  // namespace lifeline::store::postgres
