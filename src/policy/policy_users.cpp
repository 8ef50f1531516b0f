#include "policy/policy_users.h"

#include "common/log.h"
#include "crypto/token.h"

#include <fmt/format.h>
#include <sodium.h>

#include <algorithm>
#include <cctype>

namespace lifeline::policy {
namespace {

std::shared_ptr<spdlog::logger> Log() { return log::Get("policy"); }

constexpr std::string_view kApiTokenPrefix = "llpol";
constexpr std::string_view kSessionTokenPrefix = "llpols";
// Longer passwords are refused rather than hashed: Argon2id's cost does not depend on the length,
// but there is no reason to accept megabytes.
constexpr std::size_t kMaxPasswordLength = 1024;
// Sessions update last_used at most this often, so a busy browser does not write on every request.
constexpr std::int64_t kTouchIntervalMs = 60'000;

std::uint64_t OpsLimit(std::uint64_t configured) {
  return configured != 0 ? configured : crypto_pwhash_OPSLIMIT_INTERACTIVE;
}
std::size_t MemLimit(std::size_t configured) {
  return configured != 0 ? configured : crypto_pwhash_MEMLIMIT_INTERACTIVE;
}

/// "192.0.2.1:50000" -> "192.0.2.1", "[2001:db8::1]:50000" -> "2001:db8::1"; "" stays "".
std::string RemoteHost(std::string_view remote) {
  if (remote.starts_with('[')) {
    const auto close = remote.find(']');
    return std::string(remote.substr(1, close == std::string_view::npos ? std::string_view::npos : close - 1));
  }
  const auto colon = remote.rfind(':');
  return std::string(colon == std::string_view::npos ? remote : remote.substr(0, colon));
}

UserInfo Info(const UserRecord& user) {
  return UserInfo{user.name, user.role, user.created_ms, user.password_changed_ms};
}

}  // namespace

Result<std::string> HashPassword(std::string_view password, std::uint64_t ops_limit, std::size_t mem_limit) {
  if (sodium_init() < 0) {
    return Fail(ServiceErrc::kStoreFailed);
  }
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str_alg(out, password.data(), password.size(), OpsLimit(ops_limit), MemLimit(mem_limit),
                            crypto_pwhash_ALG_ARGON2ID13) != 0) {
    Log()->error("Argon2id hashing failed: out of memory (needs {} bytes)", MemLimit(mem_limit));
    return Fail(ServiceErrc::kStoreFailed);
  }
  return std::string(out);
}

bool VerifyPassword(std::string_view hash, std::string_view password) {
  if (sodium_init() < 0) {
    return false;
  }
  const std::string terminated(hash);  // libsodium wants a NUL-terminated string
  return crypto_pwhash_str_verify(terminated.c_str(), password.data(), password.size()) == 0;
}

bool IsValidAccountName(std::string_view name) {
  if (name.empty() || name.size() > 64 || !std::isalnum(static_cast<unsigned char>(name.front()))) {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '@' || c == '-';
  });
}

PolicyUsers::PolicyUsers(PolicyStore& store, const Clock& clock, UsersOptions options)
    : store_(store), clock_(clock), options_(options) {}

void PolicyUsers::SetSecurityEventSink(SecurityEventSink sink) { sink_ = std::move(sink); }

void PolicyUsers::Report(SecurityEvent event) const {
  if (event.at == std::chrono::system_clock::time_point()) {
    event.at = clock_.Now();
  }
  if (sink_) {
    sink_(event);
  }
}

VoidResult PolicyUsers::CheckPassword(std::string_view password) const {
  if (password.size() < options_.min_password_length || password.size() > kMaxPasswordLength) {
    return Fail(ServiceErrc::kWeakPassword);
  }
  return {};
}

VoidResult PolicyUsers::AddUser(std::string_view name, Role role, std::string_view password, std::string_view actor) {
  if (!IsValidAccountName(name)) {
    return Fail(ServiceErrc::kInvalidArgument);
  }
  if (auto ok = CheckPassword(password); !ok) {
    return ok;
  }
  auto hash = HashPassword(password, options_.hash_ops_limit, options_.hash_mem_limit);
  if (!hash) {
    return hash.error();
  }
  const std::int64_t now = clock_.NowUnixMillis();
  if (auto added = store_.AddUser(UserRecord{std::string(name), role, *hash, now, now}); !added) {
    return added;
  }
  Log()->info("user '{}' added with role {} by {}", name, ToString(role), actor);
  Report({"user_added", std::string(name), std::string(actor), "", fmt::format("role {}", ToString(role)), {}});
  return {};
}

VoidResult PolicyUsers::SetPassword(std::string_view name, std::string_view password, std::string_view actor) {
  if (auto ok = CheckPassword(password); !ok) {
    return ok;
  }
  auto hash = HashPassword(password, options_.hash_ops_limit, options_.hash_mem_limit);
  if (!hash) {
    return hash.error();
  }
  if (auto set = store_.SetPasswordHash(name, *hash, clock_.NowUnixMillis()); !set) {
    return set;
  }
  Log()->info("password of '{}' changed by {}", name, actor);
  Report({"password_changed", std::string(name), std::string(actor), "", "", {}});
  return {};
}

VoidResult PolicyUsers::RemoveUser(std::string_view name, std::string_view actor) {
  if (auto removed = store_.RemoveUser(name, clock_.NowUnixMillis()); !removed) {
    return removed;
  }
  Log()->info("user '{}' removed by {}; their sessions are revoked", name, actor);
  Report({"user_removed", std::string(name), std::string(actor), "", "", {}});
  return {};
}

Result<std::vector<UserInfo>> PolicyUsers::ListUsers() {
  auto users = store_.ListUsers();
  if (!users) {
    return users.error();
  }
  std::vector<UserInfo> out;
  std::transform(users->begin(), users->end(), std::back_inserter(out), Info);
  return out;
}

void PolicyUsers::CountFailure(ThrottleSubject subject, const std::string& key, std::int64_t limit,
                               std::int64_t now_ms, std::string_view remote) {
  if (key.empty()) {
    return;
  }
  const std::int64_t window_ms = std::chrono::duration_cast<std::chrono::milliseconds>(options_.failure_window).count();
  if (auto added = store_.AddLoginFailure(subject, key, now_ms); !added) {
    return;  // logged by the store; the login is refused either way
  }
  auto count = store_.CountLoginFailures(subject, key, now_ms - window_ms);
  if (!count || *count < limit) {
    return;
  }
  const std::int64_t until = now_ms + std::chrono::duration_cast<std::chrono::milliseconds>(options_.lockout).count();
  if (auto locked = store_.SetLockout(subject, key, until); !locked) {
    return;
  }
  const char* what = subject == ThrottleSubject::kUser ? "user" : "address";
  Log()->warn("{} '{}' locked for {} s after {} wrong passwords within {} s", what, key, options_.lockout.count(),
              *count, options_.failure_window.count());
  Report({"lockout", key, key, std::string(remote),
          fmt::format("{} locked for {} s after {} wrong passwords", what, options_.lockout.count(), *count), {}});
}

Result<IssuedToken> PolicyUsers::Login(std::string_view name, std::string_view password, std::string_view remote) {
  const std::int64_t now = clock_.NowUnixMillis();
  const std::string address = RemoteHost(remote);
  const std::string user_name(name);

  // A locked name or address is refused before the password is looked at: guesses made during a
  // lockout teach the guesser nothing.
  for (auto [subject, key] : {std::pair{ThrottleSubject::kUser, user_name}, std::pair{ThrottleSubject::kAddress, address}}) {
    if (key.empty()) {
      continue;
    }
    auto until = store_.LockedUntil(subject, key);
    if (!until) {
      return until.error();
    }
    if (*until && **until > now) {
      Log()->warn("login as '{}' from {} refused: {} locked for {} more s", name, remote,
                  subject == ThrottleSubject::kUser ? "user" : "address", (**until - now + 999) / 1000);
      Report({"login_locked", user_name, user_name, std::string(remote),
              subject == ThrottleSubject::kUser ? "user locked" : "address locked", {}});
      return Fail(ServiceErrc::kLockedOut);
    }
  }

  auto user = store_.FindUser(name);
  if (!user) {
    return user.error();
  }
  bool ok = false;
  if (*user) {
    ok = VerifyPassword((*user)->password_hash, password);
  } else {
    std::call_once(dummy_once_, [this] {
      auto hash = HashPassword("not a password of anyone", options_.hash_ops_limit, options_.hash_mem_limit);
      dummy_hash_ = hash ? *hash : std::string();
    });
    (void)VerifyPassword(dummy_hash_, password);
  }
  if (!ok) {
    Log()->warn("login as '{}' from {} failed: {}", name, remote, *user ? "wrong password" : "no such user");
    Report({"login_failed", user_name, user_name, std::string(remote), *user ? "wrong password" : "no such user", {}});
    // Unknown names are counted too, so probing for names costs the same as guessing passwords.
    CountFailure(ThrottleSubject::kUser, user_name, options_.max_failures_per_user, now, remote);
    CountFailure(ThrottleSubject::kAddress, address, options_.max_failures_per_address, now, remote);
    return Fail(ServiceErrc::kBadCredentials);
  }
  (void)store_.ClearLoginFailures(ThrottleSubject::kUser, user_name);
  (void)store_.PruneLoginFailures(
      now - std::chrono::duration_cast<std::chrono::milliseconds>(options_.failure_window + options_.lockout).count());

  // Hashes made with older (cheaper) parameters are upgraded while the password is at hand.
  const std::string& stored = (*user)->password_hash;
  if (crypto_pwhash_str_needs_rehash(stored.c_str(), OpsLimit(options_.hash_ops_limit),
                                     MemLimit(options_.hash_mem_limit)) != 0) {
    if (auto rehashed = HashPassword(password, options_.hash_ops_limit, options_.hash_mem_limit); rehashed) {
      (void)store_.SetPasswordHash(name, *rehashed, (*user)->password_changed_ms);
    }
  }

  TokenRecord record;
  record.kind = TokenKind::kSession;
  record.name = user_name;
  const std::string token = crypto::GenerateToken(kSessionTokenPrefix);
  record.token_hash = crypto::HashToken(token);
  record.role = (*user)->role;
  record.created_by = user_name;
  record.created_ms = now;
  record.expires_ms = now + std::chrono::duration_cast<std::chrono::milliseconds>(options_.session_lifetime).count();
  if (auto added = store_.AddToken(record); !added) {
    return added.error();
  }
  Log()->info("'{}' (role {}) logged in from {}", name, ToString((*user)->role), remote);
  Report({"login", user_name, user_name, std::string(remote), fmt::format("role {}", ToString((*user)->role)), {}});
  return IssuedToken{token, user_name, (*user)->role, record.expires_ms};
}

VoidResult PolicyUsers::Logout(std::string_view token, const Caller& caller, std::string_view remote) {
  if (auto revoked = store_.RevokeTokenByHash(crypto::HashToken(token), clock_.NowUnixMillis()); !revoked) {
    return revoked;
  }
  Report({"logout", caller.name, caller.name, std::string(remote), "", {}});
  return {};
}

Result<IssuedToken> PolicyUsers::CreateToken(std::string_view name, Role role,
                                             std::optional<std::chrono::seconds> ttl, std::string_view actor) {
  if (!IsValidAccountName(name) || (ttl && (ttl->count() <= 0 || *ttl > options_.max_token_lifetime))) {
    return Fail(ServiceErrc::kInvalidArgument);
  }
  const std::int64_t now = clock_.NowUnixMillis();
  TokenRecord record;
  record.kind = TokenKind::kApi;
  record.name = std::string(name);
  const std::string token = crypto::GenerateToken(kApiTokenPrefix);
  record.token_hash = crypto::HashToken(token);
  record.role = role;
  record.created_by = std::string(actor);
  record.created_ms = now;
  if (ttl) {
    record.expires_ms = now + std::chrono::duration_cast<std::chrono::milliseconds>(*ttl).count();
  }
  if (auto added = store_.AddToken(record); !added) {
    return added.error();
  }
  const std::string expiry =
      record.expires_ms ? FormatRfc3339(std::chrono::system_clock::time_point(std::chrono::milliseconds(*record.expires_ms)))
                        : std::string("never");
  Log()->info("API token '{}' (role {}, expires {}) created by {}", name, ToString(role), expiry, actor);
  Report({"token_created", record.name, std::string(actor), "",
          fmt::format("role {}, expires {}", ToString(role), expiry), {}});
  return IssuedToken{token, record.name, role, record.expires_ms};
}

Result<std::vector<TokenInfo>> PolicyUsers::ListTokens() {
  auto tokens = store_.ListTokens(TokenKind::kApi);
  if (!tokens) {
    return tokens.error();
  }
  std::vector<TokenInfo> out;
  for (const auto& t : *tokens) {
    out.push_back(TokenInfo{t.name, t.role, t.created_by, t.created_ms, t.expires_ms, t.revoked_ms, t.last_used_ms});
  }
  return out;
}

VoidResult PolicyUsers::RevokeToken(std::string_view name, std::string_view actor) {
  if (auto revoked = store_.RevokeApiToken(name, clock_.NowUnixMillis()); !revoked) {
    return revoked;
  }
  Log()->info("API token '{}' revoked by {}", name, actor);
  Report({"token_revoked", std::string(name), std::string(actor), "", "", {}});
  return {};
}

Result<std::optional<Caller>> PolicyUsers::Authenticate(std::string_view token) {
  if (!token.starts_with(kApiTokenPrefix)) {
    return std::optional<Caller>();
  }
  auto found = store_.FindTokenByHash(crypto::HashToken(token));
  if (!found) {
    return found.error();
  }
  const std::int64_t now = clock_.NowUnixMillis();
  if (!*found || (*found)->revoked_ms || ((*found)->expires_ms && *(*found)->expires_ms <= now)) {
    return std::optional<Caller>();
  }
  const TokenRecord& record = **found;
  Caller caller{record.name, record.role, record.kind};
  if (record.kind == TokenKind::kSession) {
    auto user = store_.FindUser(record.name);
    if (!user) {
      return user.error();
    }
    if (!*user) {
      return std::optional<Caller>();
    }
    caller.role = (*user)->role;
  }
  if (!record.last_used_ms || now - *record.last_used_ms >= kTouchIntervalMs) {
    (void)store_.TouchToken(record.id, now);
  }
  return std::optional<Caller>(std::move(caller));
}

}  // namespace lifeline::policy
