#pragma once
// Users, logins and tokens of the policy manager. Passwords are hashed with Argon2id (libsodium's
// crypto_pwhash_str_alg) and checked against a minimum length; wrong passwords are counted per user
// name and per remote address within a window, and past a limit that name or address is refused,
// even with the right password, until the lockout ends. Every login, lockout and change of users or
// tokens is reported to a SecurityEventSink, which the audit log is wired to.
//
// Tokens are 256 random bits ("llpol_..." API tokens, "llpols_..." session tokens from a login);
// the store keeps only their SHA-256, so a copied store yields no usable credential.
#include "common/clock.h"
#include "common/result.h"
#include "policy/policy_store.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lifeline::policy {

/// Who made an authenticated request.
struct Caller {
  std::string name;  // the user's name (session token) or the API token's name
  Role role = Role::kAuditor;
  TokenKind via = TokenKind::kSession;
};

/// Something the audit log must record. `kind` is one of: "login", "login_failed", "login_locked"
/// (refused during a lockout), "lockout" (a user name or address just got locked), "logout",
/// "user_added", "user_removed", "password_changed", "token_created", "token_revoked",
/// "access_denied" (a valid token asked for a route its role may not use).
struct SecurityEvent {
  std::string kind;
  std::string subject;  // the user or token name the event is about (a lockout: the name or address)
  std::string actor;    // who acted: a caller's name, "local-admin" (the CLI on the store), or the subject
  std::string remote;   // the request's remote address, "" for the CLI
  std::string detail;   // one human line: role, expiry, reason
  std::chrono::system_clock::time_point at;
};
/// Called synchronously on the thread that caused the event; must be thread-safe and not throw.
using SecurityEventSink = std::function<void(const SecurityEvent&)>;

struct UsersOptions {
  std::size_t min_password_length = 12;
  std::int64_t max_failures_per_user = 5;
  std::int64_t max_failures_per_address = 20;
  std::chrono::seconds failure_window = std::chrono::minutes(15);
  std::chrono::seconds lockout = std::chrono::minutes(15);
  std::chrono::seconds session_lifetime = std::chrono::hours(8);
  std::chrono::seconds max_token_lifetime = std::chrono::hours(24 * 366);
  // Argon2id cost: libsodium's "interactive" limits (64 MiB, 2 passes) by default. Tests lower them;
  // hashes keep their own parameters, so a change applies at each user's next login (rehash).
  std::uint64_t hash_ops_limit = 0;  // 0: crypto_pwhash_OPSLIMIT_INTERACTIVE
  std::size_t hash_mem_limit = 0;    // 0: crypto_pwhash_MEMLIMIT_INTERACTIVE
};

struct UserInfo {
  std::string name;
  Role role = Role::kAuditor;
  std::int64_t created_ms = 0;
  std::int64_t password_changed_ms = 0;
};

struct TokenInfo {
  std::string name;
  Role role = Role::kAuditor;
  std::string created_by;
  std::int64_t created_ms = 0;
  std::optional<std::int64_t> expires_ms;
  std::optional<std::int64_t> revoked_ms;
  std::optional<std::int64_t> last_used_ms;
};

/// A secret handed out once: the caller shows it and forgets it.
struct IssuedToken {
  std::string token;
  std::string name;
  Role role = Role::kAuditor;
  std::optional<std::int64_t> expires_ms;
};

/// Hashes `password` as an Argon2id string ("$argon2id$v=19$m=65536,t=2,p=1$...").
/// ServiceErrc::kStoreFailed only when libsodium cannot allocate the memory it needs.
[[nodiscard]] Result<std::string> HashPassword(std::string_view password, std::uint64_t ops_limit = 0,
                                               std::size_t mem_limit = 0);
/// True when `password` matches `hash` (any Argon2 string libsodium reads).
bool VerifyPassword(std::string_view hash, std::string_view password);

/// User and account names: 1..64 of [A-Za-z0-9._@-], starting with a letter or digit.
bool IsValidAccountName(std::string_view name);

class PolicyUsers {
 public:
  /// `store` and `clock` must outlive this object.
  PolicyUsers(PolicyStore& store, const Clock& clock, UsersOptions options);

  /// Replaces the security-event sink (default: none). Call before serving requests.
  void SetSecurityEventSink(SecurityEventSink sink);

  /// kInvalidArgument (name), kWeakPassword, kAlreadyExists.
  [[nodiscard]] VoidResult AddUser(std::string_view name, Role role, std::string_view password,
                                   std::string_view actor);
  /// kNotFound, kWeakPassword. Revokes nothing: sessions end at their expiry.
  [[nodiscard]] VoidResult SetPassword(std::string_view name, std::string_view password, std::string_view actor);
  /// Removes the user and revokes their session tokens. kNotFound.
  [[nodiscard]] VoidResult RemoveUser(std::string_view name, std::string_view actor);
  [[nodiscard]] Result<std::vector<UserInfo>> ListUsers();

  /// Checks the password and issues a session token valid for options.session_lifetime.
  /// kLockedOut while the name or `remote`'s address is locked (the password is not even checked);
  /// kBadCredentials for an unknown name or a wrong password (the same answer, in about the same time).
  [[nodiscard]] Result<IssuedToken> Login(std::string_view name, std::string_view password,
                                          std::string_view remote);
  /// Revokes the session token `token` (logout). kNotFound when it is unknown or already revoked.
  [[nodiscard]] VoidResult Logout(std::string_view token, const Caller& caller, std::string_view remote);

  /// A named API token with `role`; `ttl` none: no expiry. kInvalidArgument (name, or ttl beyond
  /// max_token_lifetime), kAlreadyExists.
  [[nodiscard]] Result<IssuedToken> CreateToken(std::string_view name, Role role,
                                                std::optional<std::chrono::seconds> ttl, std::string_view actor);
  [[nodiscard]] Result<std::vector<TokenInfo>> ListTokens();
  /// kNotFound when there is no unrevoked API token of that name.
  [[nodiscard]] VoidResult RevokeToken(std::string_view name, std::string_view actor);

  /// The caller a bearer token stands for; nullopt when the token is unknown, expired, revoked, or
  /// its user is gone. A session token takes its user's current role.
  [[nodiscard]] Result<std::optional<Caller>> Authenticate(std::string_view token);

  /// Reports an event through the sink (for the server's "access_denied").
  void Report(SecurityEvent event) const;

  const UsersOptions& options() const { return options_; }

 private:
  [[nodiscard]] VoidResult CheckPassword(std::string_view password) const;
  /// Counts a failure against `subject`/`key`; locks it when the count reaches `limit`.
  void CountFailure(ThrottleSubject subject, const std::string& key, std::int64_t limit, std::int64_t now_ms,
                    std::string_view remote);

  PolicyStore& store_;
  const Clock& clock_;
  UsersOptions options_;
  SecurityEventSink sink_;
  // Verified against for unknown names, so they take as long as known ones; made at first use.
  std::once_flag dummy_once_;
  std::string dummy_hash_;
};

}  // namespace lifeline::policy
