#pragma once
// The policy manager's store of users, API and session tokens, and login failures. PolicyStore is the
// seam (STYLE: small abstract classes); its implementation is written once on the SQL seam
// (store/sql) and runs on SQLite or PostgreSQL (policy_database.h, policy.toml's store.backend).
// Passwords arrive here already hashed (Argon2id strings) and tokens as SHA-256 hex: nothing stored
// here is usable as a credential.
#include "common/result.h"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace lifeline::store::sql {
class Database;
}

namespace lifeline::policy {

/// Errors of the service parts (store, users, tokens, login).
enum class ServiceErrc {
  kNotFound = 1,     // no such user or token
  kAlreadyExists,    // a user or token of that name exists
  kInvalidArgument,  // a malformed name, role or expiry
  kWeakPassword,     // shorter than the password policy allows
  kBadCredentials,   // wrong user name or password
  kLockedOut,        // too many wrong passwords: the user name or address is locked for a while
  kStoreFailed,      // the database failed; details in the log
};
const std::error_category& ServiceErrorCategory();
inline std::error_code make_error_code(ServiceErrc code) {
  return {static_cast<int>(code), ServiceErrorCategory()};
}

/// Roles, ordered: each may do what the ones below it may. An auditor reads (audit log, policies,
/// requests); an approver also decides approval requests; an admin also manages policies, users
/// and tokens.
enum class Role { kAuditor = 1, kApprover = 2, kAdmin = 3 };
std::string_view ToString(Role role);
/// "admin", "approver", "auditor" -> the role; nullopt otherwise.
std::optional<Role> ParseRole(std::string_view text);

struct UserRecord {
  std::string name;
  Role role = Role::kAuditor;
  std::string password_hash;  // crypto_pwhash_str output: "$argon2id$v=19$m=...,t=...,p=1$salt$hash"
  std::int64_t created_ms = 0;
  std::int64_t password_changed_ms = 0;
};

enum class TokenKind { kSession = 1, kApi = 2 };

struct TokenRecord {
  std::int64_t id = 0;
  TokenKind kind = TokenKind::kApi;
  std::string name;        // API token: its unique name; session: the user's name
  std::string token_hash;  // crypto::HashToken(token)
  Role role = Role::kAuditor;  // API tokens; a session takes its user's current role
  std::string created_by;
  std::int64_t created_ms = 0;
  std::optional<std::int64_t> expires_ms;
  std::optional<std::int64_t> revoked_ms;
  std::optional<std::int64_t> last_used_ms;
};

/// What login failures are counted against.
enum class ThrottleSubject { kUser = 1, kAddress = 2 };

class PolicyStore {
 public:
  virtual ~PolicyStore() = default;

  /// kAlreadyExists when the name is taken.
  [[nodiscard]] virtual VoidResult AddUser(const UserRecord& user) = 0;
  [[nodiscard]] virtual Result<std::optional<UserRecord>> FindUser(std::string_view name) = 0;
  [[nodiscard]] virtual Result<std::vector<UserRecord>> ListUsers() = 0;
  /// kNotFound when there is no such user.
  [[nodiscard]] virtual VoidResult SetPasswordHash(std::string_view name, std::string_view hash,
                                                   std::int64_t now_ms) = 0;
  /// Removes the user and revokes their session tokens. kNotFound when there is no such user.
  [[nodiscard]] virtual VoidResult RemoveUser(std::string_view name, std::int64_t now_ms) = 0;

  /// Stores a token; returns its id. kAlreadyExists when an API token of that name exists (revoked
  /// ones included: names stay unique so the audit log's names stay unambiguous).
  [[nodiscard]] virtual Result<std::int64_t> AddToken(const TokenRecord& token) = 0;
  [[nodiscard]] virtual Result<std::optional<TokenRecord>> FindTokenByHash(std::string_view token_hash) = 0;
  [[nodiscard]] virtual Result<std::vector<TokenRecord>> ListTokens(TokenKind kind) = 0;
  /// Revokes the API token `name`. kNotFound when there is none (or it was already revoked).
  [[nodiscard]] virtual VoidResult RevokeApiToken(std::string_view name, std::int64_t now_ms) = 0;
  /// Revokes one token by its hash (logout). kNotFound when unknown or already revoked.
  [[nodiscard]] virtual VoidResult RevokeTokenByHash(std::string_view token_hash, std::int64_t now_ms) = 0;
  /// Records a use (coarse: callers update at most once a minute per token).
  [[nodiscard]] virtual VoidResult TouchToken(std::int64_t id, std::int64_t now_ms) = 0;

  [[nodiscard]] virtual VoidResult AddLoginFailure(ThrottleSubject subject, std::string_view key,
                                                   std::int64_t at_ms) = 0;
  /// Failures recorded for `key` at or after `since_ms`.
  [[nodiscard]] virtual Result<std::int64_t> CountLoginFailures(ThrottleSubject subject, std::string_view key,
                                                               std::int64_t since_ms) = 0;
  /// Forgets the failures of `key` (after a successful login).
  [[nodiscard]] virtual VoidResult ClearLoginFailures(ThrottleSubject subject, std::string_view key) = 0;
  /// Deletes failures older than `before_ms`, and lockouts that ended before it.
  [[nodiscard]] virtual VoidResult PruneLoginFailures(std::int64_t before_ms) = 0;
  [[nodiscard]] virtual VoidResult SetLockout(ThrottleSubject subject, std::string_view key,
                                              std::int64_t until_ms) = 0;
  /// The end of the lockout of `key`, if one was ever set (it may lie in the past).
  [[nodiscard]] virtual Result<std::optional<std::int64_t>> LockedUntil(ThrottleSubject subject,
                                                                        std::string_view key) = 0;
};

/// The store on `db` (either backend), its schema brought to the current version first.
[[nodiscard]] Result<std::unique_ptr<PolicyStore>> OpenSqlPolicyStore(std::shared_ptr<store::sql::Database> db);

/// Opens (creating, mode 0600, in a 0700 directory if it has to make one) the SQLite store at `path`
/// and brings its schema to the current version.
[[nodiscard]] Result<std::unique_ptr<PolicyStore>> OpenSqlitePolicyStore(const std::filesystem::path& path);

}  // namespace lifeline::policy

template <>
struct std::is_error_code_enum<lifeline::policy::ServiceErrc> : std::true_type {};
