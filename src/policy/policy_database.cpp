#include "policy/policy_database.h"

#include "common/log.h"
#include "policy/policy_config.h"
#include "store/postgres/session.h"
#include "store/sqlite/sql_session.h"

#include <fmt/format.h>
#include <libpq-fe.h>

namespace lifeline::policy {
namespace sql = store::sql;

namespace {
std::shared_ptr<spdlog::logger> Log() { return log::Get("policy"); }
}  // namespace

Result<std::shared_ptr<sql::Database>> OpenPolicySqlite(const std::filesystem::path& path) {
  auto db = store::sqlite::OpenSqlDatabase(path, {.private_file = true});
  if (!db) {
    Log()->error("cannot open {}: {}", path.string(), sql::LastErrorDetail());
    return db.error();
  }
  return db;
}

namespace {

/// "database 'x' on host:port as 'user'" from the connection string's own fields, for the log line of
/// a connection that failed; never its password.
std::string DescribeConninfo(const std::string& conninfo) {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), &error);
  if (options == nullptr) {
    PQfreemem(error);
    return "(store.postgresql.url does not parse as a connection string)";
  }
  std::string host, port, dbname, user;
  for (const PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    const std::string_view key = o->keyword;
    const std::string value = o->val != nullptr ? o->val : "";
    if (key == "host") {
      host = value;
    } else if (key == "port") {
      port = value;
    } else if (key == "dbname") {
      dbname = value;
    } else if (key == "user") {
      user = value;
    }
  }
  PQconninfoFree(options);
  return fmt::format("database '{}' on {}:{} as '{}'", dbname.empty() ? "(default)" : dbname,
                     host.empty() ? "(default)" : host, port.empty() ? "(default)" : port,
                     user.empty() ? "(default)" : user);
}

Result<std::shared_ptr<sql::Database>> OpenPostgres(const PolicyConfig& config) {
  auto db = store::postgres::Open({.conninfo = config.store_postgresql_url,
                                   .pool_size = static_cast<int>(config.store_postgresql_pool_size),
                                   .application_name = "lifeline-policy"});
  if (!db) {
    Log()->error("cannot connect to the PostgreSQL database of store.postgresql.url ({}): {}",
                 DescribeConninfo(config.store_postgresql_url), sql::LastErrorDetail());
    return db.error();
  }
  return db;
}

}  // namespace

Result<std::shared_ptr<sql::Database>> OpenPolicyAuditForReading(const PolicyConfig& config) {
  if (config.store_backend == "postgresql") {
    return OpenPostgres(config);
  }
  const auto path = std::filesystem::path(config.data_dir) / "audit.db";
  if (!std::filesystem::exists(path)) {
    return Fail(std::make_error_code(std::errc::no_such_file_or_directory));
  }
  auto db = store::sqlite::OpenSqlDatabase(path, {.read_only = true});
  if (!db) {
    Log()->error("cannot open {}: {}", path.string(), sql::LastErrorDetail());
  }
  return db;
}

Result<PolicyDatabases> OpenPolicyDatabases(const PolicyConfig& config, bool open_audit) {
  if (config.store_backend == "postgresql") {
    auto db = OpenPostgres(config);
    if (!db) {
      return db.error();
    }
    Log()->info("policy store: {}", (*db)->description());
    return PolicyDatabases{*db, *db};
  }
  auto store = OpenPolicySqlite(config.StorePath());
  if (!store) {
    return store.error();
  }
  if (!open_audit) {
    return PolicyDatabases{std::move(*store), nullptr};
  }
  auto audit = OpenPolicySqlite(std::filesystem::path(config.data_dir) / "audit.db");
  if (!audit) {
    return audit.error();
  }
  return PolicyDatabases{std::move(*store), std::move(*audit)};
}

VoidResult LockForWrite(sql::Session& session, std::int64_t key) {
  if (session.backend() != sql::Backend::kPostgres) {
    return {};
  }
  if (auto locked = session.Query("SELECT pg_advisory_xact_lock($1)", key); !locked) {
    return locked.error();
  }
  return {};
}

VoidResult EnsureTables(sql::Database& db, std::string_view sqlite_ddl, std::string_view postgres_ddl,
                        std::string_view what) {
  auto made = db.Transaction(sql::TxMode::kWrite, [&](sql::Session& s) -> VoidResult {
    if (auto locked = LockForWrite(s, lock_key::kSchema); !locked) {
      return locked;
    }
    return s.ExecScript(db.backend() == sql::Backend::kSqlite ? sqlite_ddl : postgres_ddl);
  });
  if (!made) {
    Log()->error("{}: cannot create the {}: {} ({})", db.description(), what, made.error().message(),
                 sql::LastErrorDetail());
  }
  return made;
}

Result<std::shared_ptr<sql::Database>> OpenWithTables(std::shared_ptr<sql::Database> given,
                                                      const std::filesystem::path& sqlite_path,
                                                      std::string_view sqlite_ddl, std::string_view postgres_ddl,
                                                      std::string_view what) {
  std::shared_ptr<sql::Database> db = std::move(given);
  if (!db) {
    auto opened = OpenPolicySqlite(sqlite_path);
    if (!opened) {
      return opened.error();
    }
    db = std::move(*opened);
  }
  if (auto made = EnsureTables(*db, sqlite_ddl, postgres_ddl, what); !made) {
    return made.error();
  }
  return db;
}

}  // namespace lifeline::policy
