#include "store/sql/migrate.h"

#include "common/log.h"

namespace lifeline::store::sql {
namespace {

// Portable DDL: an INTEGER PRIMARY KEY without AUTOINCREMENT or IDENTITY means the same on both.
constexpr std::string_view kVersionTable =
    "CREATE TABLE IF NOT EXISTS schema_version ("
    "id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)";

/// The recorded version, creating the table (and adopting SQLite's user_version) when missing.
Result<std::int64_t> CurrentVersion(Session& session) {
  if (auto created = session.ExecScript(kVersionTable); !created) {
    return created.error();
  }
  auto row = session.QueryRow("SELECT version FROM schema_version WHERE id = 1");
  if (!row) {
    return row.error();
  }
  if (*row) {
    return (*row)->Int(0);
  }
  std::int64_t adopted = 0;
  if (session.backend() == Backend::kSqlite) {
    // Files made before schema_version existed kept their version in the header.
    auto user_version = session.QueryRow("PRAGMA user_version");
    if (!user_version) {
      return user_version.error();
    }
    adopted = *user_version ? (*user_version)->Int(0) : 0;
  }
  if (auto inserted = session.Exec("INSERT INTO schema_version (id, version) VALUES (1, $1)", adopted);
      !inserted) {
    return inserted.error();
  }
  return adopted;
}

}  // namespace

VoidResult Migrate(Database& db, std::span<const Migration> steps, std::int64_t lock_key) {
  const auto newest = static_cast<std::int64_t>(steps.size());
  // Bounded: each round applies one step or finds the schema current.
  for (std::size_t round = 0; round <= steps.size(); ++round) {
    std::int64_t applied_version = 0;
    auto applied = db.Transaction(TxMode::kWrite, [&](Session& session) -> Result<bool> {
      if (session.backend() == Backend::kPostgres) {
        if (auto locked = session.Exec("SELECT pg_advisory_xact_lock($1)", lock_key); !locked) {
          return Fail(locked.error());
        }
      }
      auto version = CurrentVersion(session);
      if (!version) {
        return Fail(version.error());
      }
      if (*version > newest) {
        SetLastErrorDetail("schema version " + std::to_string(*version) + ", this program knows " +
                           std::to_string(newest));
        return Fail(make_error_code(Errc::kSchemaTooNew));
      }
      if (*version == newest) {
        return false;
      }
      const Migration& step = steps[static_cast<std::size_t>(*version)];
      if (auto ran = session.ExecScript(session.backend() == Backend::kSqlite ? step.sqlite : step.postgres);
          !ran) {
        return Fail(ran.error());
      }
      if (auto bumped =
              session.Exec("UPDATE schema_version SET version = $1 WHERE id = 1", *version + 1);
          !bumped) {
        return Fail(bumped.error());
      }
      applied_version = *version + 1;
      return true;
    });
    if (!applied) {
      return applied.error();
    }
    if (!*applied) {
      return {};
    }
    log::Get("store")->info("{}: schema migrated to version {}", db.description(), applied_version);
  }
  return {};
}

Result<std::int64_t> SchemaVersion(Database& db) {
  return db.WithSession([](Session& session) -> Result<std::int64_t> {
    auto row = session.QueryRow("SELECT version FROM schema_version WHERE id = 1");
    if (!row) {
      return row.error();
    }
    return *row ? (*row)->Int(0) : 0;
  });
}

}  // namespace lifeline::store::sql
