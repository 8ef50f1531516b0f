#include "policy/policy_store.h"

#include "common/log.h"
#include "store/sqlite/database.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <mutex>

namespace lifeline::policy {
namespace {

std::shared_ptr<spdlog::logger> Log() { return log::Get("policy"); }

const char* Describe(ServiceErrc code) {
  switch (code) {
    case ServiceErrc::kNotFound:
      return "no such user or token";
    case ServiceErrc::kAlreadyExists:
      return "a user or token of that name already exists";
    case ServiceErrc::kInvalidArgument:
      return "invalid name, role or expiry";
    case ServiceErrc::kWeakPassword:
      return "the password is shorter than the password policy allows";
    case ServiceErrc::kBadCredentials:
      return "wrong user name or password";
    case ServiceErrc::kLockedOut:
      return "too many wrong passwords: locked for a while";
    case ServiceErrc::kStoreFailed:
      return "the policy store failed (see the log)";
  }
  return "unknown policy service error";
}

// Step i moves the schema from version i to i+1 (PRAGMA user_version). Append, never edit: a store
// written by an older lifeline replays only the steps it lacks.
constexpr std::array<std::string_view, 1> kSchema = {
    R"sql(
CREATE TABLE users (
  name                TEXT PRIMARY KEY,
  role                INTEGER NOT NULL,
  password_hash       TEXT NOT NULL,
  created_ms          INTEGER NOT NULL,
  password_changed_ms INTEGER NOT NULL
);
CREATE TABLE tokens (
  id           INTEGER PRIMARY KEY,
  kind         INTEGER NOT NULL,
  name         TEXT NOT NULL,
  token_hash   TEXT NOT NULL UNIQUE,
  role         INTEGER NOT NULL,
  created_by   TEXT NOT NULL,
  created_ms   INTEGER NOT NULL,
  expires_ms   INTEGER,
  revoked_ms   INTEGER,
  last_used_ms INTEGER
);
CREATE UNIQUE INDEX tokens_api_name ON tokens(name) WHERE kind = 2;
CREATE INDEX tokens_session_user ON tokens(name) WHERE kind = 1;
CREATE TABLE login_failures (
  subject INTEGER NOT NULL,
  key     TEXT NOT NULL,
  at_ms   INTEGER NOT NULL
);
CREATE INDEX login_failures_key ON login_failures(subject, key, at_ms);
CREATE TABLE lockouts (
  subject  INTEGER NOT NULL,
  key      TEXT NOT NULL,
  until_ms INTEGER NOT NULL,
  PRIMARY KEY (subject, key)
);
)sql",
};

constexpr std::string_view kTokenColumns =
    "id, kind, name, token_hash, role, created_by, created_ms, expires_ms, revoked_ms, last_used_ms";

std::optional<std::int64_t> OptionalInt(const store::sqlite::Statement& row, int column) {
  return row.IsNull(column) ? std::nullopt : std::optional<std::int64_t>(row.Int(column));
}

Role RoleFromInt(std::int64_t value) {
  return value == 3 ? Role::kAdmin : value == 2 ? Role::kApprover : Role::kAuditor;
}

TokenRecord TokenFromRow(const store::sqlite::Statement& row) {
  TokenRecord t;
  t.id = row.Int(0);
  t.kind = row.Int(1) == 1 ? TokenKind::kSession : TokenKind::kApi;
  t.name = row.Text(2);
  t.token_hash = row.Text(3);
  t.role = RoleFromInt(row.Int(4));
  t.created_by = row.Text(5);
  t.created_ms = row.Int(6);
  t.expires_ms = OptionalInt(row, 7);
  t.revoked_ms = OptionalInt(row, 8);
  t.last_used_ms = OptionalInt(row, 9);
  return t;
}

UserRecord UserFromRow(const store::sqlite::Statement& row) {
  return UserRecord{row.Text(0), RoleFromInt(row.Int(1)), row.Text(2), row.Int(3), row.Int(4)};
}

constexpr std::string_view kUserColumns = "name, role, password_hash, created_ms, password_changed_ms";

// Handlers run on several worker threads; one SQLite connection behind a mutex is plenty for a
// service that sees a few requests a second (logins are bounded by Argon2id anyway).
class SqlitePolicyStore final : public PolicyStore {
 public:
  explicit SqlitePolicyStore(std::unique_ptr<store::sqlite::Database> db) : db_(std::move(db)) {}

  VoidResult AddUser(const UserRecord& user) override {
    std::lock_guard lock(mutex_);
    auto stmt = db_->Prepare(
        "INSERT INTO users (name, role, password_hash, created_ms, password_changed_ms) VALUES (?, ?, ?, ?, ?)");
    if (!stmt) {
      return Failed(stmt.error());
    }
    stmt->BindAll(user.name, static_cast<std::int64_t>(user.role), user.password_hash, user.created_ms,
                  user.password_changed_ms);
    if (auto ran = stmt->Run(); !ran) {
      return IsUniqueViolation() ? Fail(ServiceErrc::kAlreadyExists) : Failed(ran.error());
    }
    return {};
  }

  Result<std::optional<UserRecord>> FindUser(std::string_view name) override {
    std::lock_guard lock(mutex_);
    auto stmt = db_->Prepare(std::string("SELECT ") + std::string(kUserColumns) + " FROM users WHERE name = ?");
    if (!stmt) {
      return Failed(stmt.error());
    }
    stmt->Bind(1, name);
    auto row = stmt->Step();
    if (!row) {
      return Failed(row.error());
    }
    if (!*row) {
      return std::optional<UserRecord>();
    }
    return std::optional<UserRecord>(UserFromRow(*stmt));
  }

  Result<std::vector<UserRecord>> ListUsers() override {
    std::lock_guard lock(mutex_);
    auto stmt = db_->Prepare(std::string("SELECT ") + std::string(kUserColumns) + " FROM users ORDER BY name");
    if (!stmt) {
      return Failed(stmt.error());
    }
    std::vector<UserRecord> users;
    for (;;) {
      auto row = stmt->Step();
      if (!row) {
        return Failed(row.error());
      }
      if (!*row) {
        return users;
      }
      users.push_back(UserFromRow(*stmt));
    }
  }

  VoidResult SetPasswordHash(std::string_view name, std::string_view hash, std::int64_t now_ms) override {
    std::lock_guard lock(mutex_);
    return RunChanging("UPDATE users SET password_hash = ?, password_changed_ms = ? WHERE name = ?", hash, now_ms,
                       name);
  }

  VoidResult RemoveUser(std::string_view name, std::int64_t now_ms) override {
    std::lock_guard lock(mutex_);
    return db_->Transaction([&]() -> VoidResult {
      if (auto removed = RunChanging("DELETE FROM users WHERE name = ?", name); !removed) {
        return removed;
      }
      auto stmt = db_->Prepare("UPDATE tokens SET revoked_ms = ? WHERE kind = 1 AND name = ? AND revoked_ms IS NULL");
      if (!stmt) {
        return Failed(stmt.error());
      }
      stmt->BindAll(now_ms, name);
      if (auto ran = stmt->Run(); !ran) {
        return Failed(ran.error());
      }
      return {};
    });
  }

  Result<std::int64_t> AddToken(const TokenRecord& t) override {
    std::lock_guard lock(mutex_);
    auto stmt = db_->Prepare(
        "INSERT INTO tokens (kind, name, token_hash, role, created_by, created_ms, expires_ms, revoked_ms, "
        "last_used_ms) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL)");
    if (!stmt) {
      return Failed(stmt.error());
    }
    stmt->BindAll(static_cast<std::int64_t>(t.kind), t.name, t.token_hash, static_cast<std::int64_t>(t.role),
                  t.created_by, t.created_ms, t.expires_ms);
    if (auto ran = stmt->Run(); !ran) {
      return IsUniqueViolation() ? Fail(ServiceErrc::kAlreadyExists) : Failed(ran.error());
    }
    return db_->LastInsertRowId();
  }

  Result<std::optional<TokenRecord>> FindTokenByHash(std::string_view token_hash) override {
    std::lock_guard lock(mutex_);
    auto stmt = db_->Prepare(std::string("SELECT ") + std::string(kTokenColumns) + " FROM tokens WHERE token_hash = ?");
    if (!stmt) {
      return Failed(stmt.error());
    }
    stmt->Bind(1, token_hash);
    auto row = stmt->Step();
    if (!row) {
      return Failed(row.error());
    }
    if (!*row) {
      return std::optional<TokenRecord>();
    }
    return std::optional<TokenRecord>(TokenFromRow(*stmt));
  }

  Result<std::vector<TokenRecord>> ListTokens(TokenKind kind) override {
    std::lock_guard lock(mutex_);
    auto stmt = db_->Prepare(std::string("SELECT ") + std::string(kTokenColumns) +
                             " FROM tokens WHERE kind = ? ORDER BY name, id");
    if (!stmt) {
      return Failed(stmt.error());
    }
    stmt->Bind(1, static_cast<std::int64_t>(kind));
    std::vector<TokenRecord> tokens;
    for (;;) {
      auto row = stmt->Step();
      if (!row) {
        return Failed(row.error());
      }
      if (!*row) {
        return tokens;
      }
      tokens.push_back(TokenFromRow(*stmt));
    }
  }

  VoidResult RevokeApiToken(std::string_view name, std::int64_t now_ms) override {
    std::lock_guard lock(mutex_);
    return RunChanging("UPDATE tokens SET revoked_ms = ? WHERE kind = 2 AND name = ? AND revoked_ms IS NULL", now_ms,
                       name);
  }

  VoidResult RevokeTokenByHash(std::string_view token_hash, std::int64_t now_ms) override {
    std::lock_guard lock(mutex_);
    return RunChanging("UPDATE tokens SET revoked_ms = ? WHERE token_hash = ? AND revoked_ms IS NULL", now_ms,
                       token_hash);
  }

  VoidResult TouchToken(std::int64_t id, std::int64_t now_ms) override {
    std::lock_guard lock(mutex_);
    return Run("UPDATE tokens SET last_used_ms = ? WHERE id = ?", now_ms, id);
  }

  VoidResult AddLoginFailure(ThrottleSubject subject, std::string_view key, std::int64_t at_ms) override {
    std::lock_guard lock(mutex_);
    return Run("INSERT INTO login_failures (subject, key, at_ms) VALUES (?, ?, ?)", static_cast<std::int64_t>(subject),
               key, at_ms);
  }

  Result<std::int64_t> CountLoginFailures(ThrottleSubject subject, std::string_view key,
                                          std::int64_t since_ms) override {
    std::lock_guard lock(mutex_);
    auto stmt = db_->Prepare("SELECT COUNT(*) FROM login_failures WHERE subject = ? AND key = ? AND at_ms >= ?");
    if (!stmt) {
      return Failed(stmt.error());
    }
    stmt->BindAll(static_cast<std::int64_t>(subject), key, since_ms);
    auto row = stmt->Step();
    if (!row) {
      return Failed(row.error());
    }
    return *row ? stmt->Int(0) : std::int64_t{0};
  }

  VoidResult ClearLoginFailures(ThrottleSubject subject, std::string_view key) override {
    std::lock_guard lock(mutex_);
    return Run("DELETE FROM login_failures WHERE subject = ? AND key = ?", static_cast<std::int64_t>(subject), key);
  }

  VoidResult PruneLoginFailures(std::int64_t before_ms) override {
    std::lock_guard lock(mutex_);
    if (auto pruned = Run("DELETE FROM login_failures WHERE at_ms < ?", before_ms); !pruned) {
      return pruned;
    }
    return Run("DELETE FROM lockouts WHERE until_ms < ?", before_ms);
  }

  VoidResult SetLockout(ThrottleSubject subject, std::string_view key, std::int64_t until_ms) override {
    std::lock_guard lock(mutex_);
    return Run(
        "INSERT INTO lockouts (subject, key, until_ms) VALUES (?, ?, ?) "
        "ON CONFLICT(subject, key) DO UPDATE SET until_ms = excluded.until_ms",
        static_cast<std::int64_t>(subject), key, until_ms);
  }

  Result<std::optional<std::int64_t>> LockedUntil(ThrottleSubject subject, std::string_view key) override {
    std::lock_guard lock(mutex_);
    auto stmt = db_->Prepare("SELECT until_ms FROM lockouts WHERE subject = ? AND key = ?");
    if (!stmt) {
      return Failed(stmt.error());
    }
    stmt->BindAll(static_cast<std::int64_t>(subject), key);
    auto row = stmt->Step();
    if (!row) {
      return Failed(row.error());
    }
    return *row ? std::optional<std::int64_t>(stmt->Int(0)) : std::optional<std::int64_t>();
  }

 private:
  bool IsUniqueViolation() const {
    const int code = db_->LastExtendedErrorCode();
    return code == SQLITE_CONSTRAINT_UNIQUE || code == SQLITE_CONSTRAINT_PRIMARYKEY;
  }

  /// One log line with SQLite's own message, then the module's error for callers.
  Failure Failed(std::error_code ec) const {
    Log()->error("policy store {}: {} ({})", db_->path().string(), ec.message(), db_->LastErrorMessage());
    return Fail(ServiceErrc::kStoreFailed);
  }

  template <class... Args>
  VoidResult Run(std::string_view sql, const Args&... args) {
    auto stmt = db_->Prepare(sql);
    if (!stmt) {
      return Failed(stmt.error());
    }
    stmt->BindAll(args...);
    if (auto ran = stmt->Run(); !ran) {
      return Failed(ran.error());
    }
    return {};
  }

  /// Run, and kNotFound when no row changed.
  template <class... Args>
  VoidResult RunChanging(std::string_view sql, const Args&... args) {
    if (auto ran = Run(sql, args...); !ran) {
      return ran;
    }
    if (db_->Changes() == 0) {
      return Fail(ServiceErrc::kNotFound);
    }
    return {};
  }

  std::mutex mutex_;
  std::unique_ptr<store::sqlite::Database> db_;
};

}  // namespace

const std::error_category& ServiceErrorCategory() {
  static const EnumErrorCategory<ServiceErrc> category("lifeline.policy.service", &Describe);
  return category;
}

std::string_view ToString(Role role) {
  switch (role) {
    case Role::kAdmin:
      return "admin";
    case Role::kApprover:
      return "approver";
    case Role::kAuditor:
      return "auditor";
  }
  return "unknown";
}

std::optional<Role> ParseRole(std::string_view text) {
  for (Role role : {Role::kAdmin, Role::kApprover, Role::kAuditor}) {
    if (text == ToString(role)) {
      return role;
    }
  }
  return std::nullopt;
}

Result<std::unique_ptr<PolicyStore>> OpenSqlitePolicyStore(const std::filesystem::path& path) {
  // 0600 from the start: it holds password hashes.
  auto db = store::sqlite::Database::Open(path, {.private_file = true});
  if (!db) {
    Log()->error("cannot open {}: {}", path.string(), db.error().message());
    return db.error();
  }
  auto version = (*db)->Prepare("PRAGMA user_version");
  if (!version) {
    Log()->error("cannot read {}: {}", path.string(), version.error().message());
    return version.error();
  }
  if (auto stepped = version->Step(); stepped && *stepped && version->Int(0) > std::ssize(kSchema)) {
    // Written by a newer lifeline: its tables may mean things this version does not know.
    Log()->error("{} has schema version {}, newer than this lifeline's {}: run the newer lifeline", path.string(),
                 version->Int(0), kSchema.size());
    return std::make_error_code(std::errc::not_supported);
  }
  version->Reset();  // no open read statement while Migrate writes
  if (auto migrated = (*db)->Migrate(kSchema); !migrated) {
    Log()->error("{}: schema update failed: {} ({})", path.string(), migrated.error().message(),
                 (*db)->LastErrorMessage());
    return migrated.error();
  }
  return std::unique_ptr<PolicyStore>(new SqlitePolicyStore(std::move(*db)));
}

}  // namespace lifeline::policy
