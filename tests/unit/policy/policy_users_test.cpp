// Users, passwords, login throttling and tokens of the policy manager, on a real store and a fake
// clock: the logic on SQLite and on a real PostgreSQL server this binary starts (TEST_P; a fresh
// database per test), what the SQLite file holds on SQLite alone.
#include "policy/policy_config.h"
#include "policy/policy_store.h"
#include "policy/policy_users.h"
#include "store/postgres/session.h"
#include "store/sql/database.h"
#include "support/fake_clock.h"
#include "support/postgres_server.h"
#include "support/temp_dir.h"

#include <gtest/gtest.h>
#include <sodium.h>
#include <sys/stat.h>

#include <fstream>
#include <iterator>

namespace lifeline::policy {
namespace {

using lifeline::testing::FakeClock;
using lifeline::testing::TempDir;
using std::chrono::minutes;
using std::chrono::seconds;

// Cheapest Argon2id the library allows, so the tests run fast; production uses "interactive".
UsersOptions TestOptions() {
  UsersOptions options;
  options.min_password_length = 12;
  options.max_failures_per_user = 3;
  options.max_failures_per_address = 5;
  options.failure_window = minutes(10);
  options.lockout = minutes(15);
  options.session_lifetime = std::chrono::hours(1);
  options.hash_ops_limit = crypto_pwhash_OPSLIMIT_MIN;
  options.hash_mem_limit = crypto_pwhash_MEMLIMIT_MIN;
  return options;
}

const auto* const postgres_environment =
    ::testing::AddGlobalTestEnvironment(new lifeline::testing::PostgresEnvironment);

class PolicyUsersFixture {
 protected:
  void OpenOn(store::sql::Backend backend) {
    Result<std::unique_ptr<PolicyStore>> store = Fail(std::make_error_code(std::errc::invalid_argument));
    if (backend == store::sql::Backend::kSqlite) {
      store = OpenSqlitePolicyStore(dir_ / "policy.db");
    } else {
      auto* server = lifeline::testing::SharedPostgres();
      ASSERT_NE(server, nullptr) << "the test PostgreSQL server did not start (see above)";
      auto db = store::postgres::Open({.conninfo = server->CreateDatabase(), .pool_size = 2});
      ASSERT_TRUE(db) << store::sql::LastErrorDetail();
      store = OpenSqlPolicyStore(std::move(*db));
    }
    ASSERT_TRUE(store) << store.error().message();
    store_ = std::move(*store);
    users_ = std::make_unique<PolicyUsers>(*store_, clock_, TestOptions());
    users_->SetSecurityEventSink([this](const SecurityEvent& e) { events_.push_back(e); });
  }
  bool HasEvent(std::string_view kind) const {
    return std::any_of(events_.begin(), events_.end(), [kind](const SecurityEvent& e) { return e.kind == kind; });
  }

  TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<PolicyStore> store_;
  std::unique_ptr<PolicyUsers> users_;
  std::vector<SecurityEvent> events_;
};

/// What only a SQLite file can show (its bytes, its mode).
class PolicyUsersTest : public ::testing::Test, public PolicyUsersFixture {
 protected:
  void SetUp() override { OpenOn(store::sql::Backend::kSqlite); }
};

class PolicyUsersOnBackendsTest : public ::testing::TestWithParam<store::sql::Backend>, public PolicyUsersFixture {
 protected:
  void SetUp() override { OpenOn(GetParam()); }
};

INSTANTIATE_TEST_SUITE_P(Backends, PolicyUsersOnBackendsTest,
                         ::testing::Values(store::sql::Backend::kSqlite, store::sql::Backend::kPostgres),
                         [](const ::testing::TestParamInfo<store::sql::Backend>& info) {
                           return std::string(info.param == store::sql::Backend::kSqlite ? "Sqlite" : "Postgres");
                         });

TEST_F(PolicyUsersTest, PasswordsAreArgon2idStringsAndNeverStoredInClear) {
  const std::string password = "correct horse battery staple";
  ASSERT_TRUE(users_->AddUser("alice", Role::kApprover, password, "local-admin"));
  auto user = store_->FindUser("alice");
  ASSERT_TRUE(user && *user);
  EXPECT_TRUE((*user)->password_hash.starts_with("$argon2id$v=19$m=")) << (*user)->password_hash;
  EXPECT_TRUE(VerifyPassword((*user)->password_hash, password));
  EXPECT_FALSE(VerifyPassword((*user)->password_hash, password + "x"));

  auto login = users_->Login("alice", password, "127.0.0.1:5000");
  ASSERT_TRUE(login);
  store_.reset();  // close, so WAL content is checkpointed into the file
  users_.reset();
  std::string bytes;
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::ifstream in(dir_ / (std::string("policy.db") + suffix), std::ios::binary);
    bytes.append(std::istreambuf_iterator<char>(in), {});
  }
  ASSERT_FALSE(bytes.empty());
  EXPECT_EQ(bytes.find(password), std::string::npos) << "the password is in the store file";
  EXPECT_EQ(bytes.find(login->token), std::string::npos) << "the session token is in the store file";

  struct stat st {};
  ASSERT_EQ(::stat((dir_ / "policy.db").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
}

TEST_F(PolicyUsersTest, HashPasswordDefaultsToArgon2idInteractive) {
  auto hash = HashPassword("a long enough password");
  ASSERT_TRUE(hash);
  EXPECT_TRUE(hash->starts_with("$argon2id$v=19$m=65536,t=2,p=1$")) << *hash;
}

TEST_P(PolicyUsersOnBackendsTest, PasswordPolicyAndNames) {
  EXPECT_EQ(users_->AddUser("bob", Role::kAdmin, "short", "t").error(), ServiceErrc::kWeakPassword);
  EXPECT_EQ(users_->AddUser("bad name", Role::kAdmin, "long enough password", "t").error(),
            ServiceErrc::kInvalidArgument);
  ASSERT_TRUE(users_->AddUser("bob", Role::kAdmin, "long enough password", "t"));
  EXPECT_EQ(users_->AddUser("bob", Role::kAuditor, "long enough password", "t").error(), ServiceErrc::kAlreadyExists);
  EXPECT_EQ(users_->SetPassword("bob", "tiny", "t").error(), ServiceErrc::kWeakPassword);
  ASSERT_TRUE(users_->SetPassword("bob", "another long password", "t"));
  EXPECT_EQ(users_->Login("bob", "long enough password", "").error(), ServiceErrc::kBadCredentials);
  EXPECT_TRUE(users_->Login("bob", "another long password", ""));
  EXPECT_TRUE(HasEvent("password_changed"));
}

TEST_P(PolicyUsersOnBackendsTest, LockoutAfterRepeatedWrongPasswordsLiftsAfterLockoutTime) {
  const std::string password = "the right password";
  ASSERT_TRUE(users_->AddUser("carol", Role::kApprover, password, "t"));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(users_->Login("carol", "wrong guess " + std::to_string(i), "192.0.2.1:4000").error(),
              ServiceErrc::kBadCredentials);
  }
  EXPECT_TRUE(HasEvent("lockout"));
  // Locked: even the right password is refused, from any address.
  EXPECT_EQ(users_->Login("carol", password, "192.0.2.9:4000").error(), ServiceErrc::kLockedOut);
  EXPECT_TRUE(HasEvent("login_locked"));
  clock_.Advance(minutes(14));
  EXPECT_EQ(users_->Login("carol", password, "192.0.2.9:4000").error(), ServiceErrc::kLockedOut);
  clock_.Advance(minutes(1) + seconds(1));
  auto login = users_->Login("carol", password, "192.0.2.9:4000");
  ASSERT_TRUE(login) << login.error().message();
  EXPECT_TRUE(HasEvent("login"));
}

TEST_P(PolicyUsersOnBackendsTest, FailuresOutsideTheWindowDoNotCount) {
  ASSERT_TRUE(users_->AddUser("dave", Role::kAuditor, "the right password", "t"));
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(users_->Login("dave", "wrong", "").error(), ServiceErrc::kBadCredentials);
    clock_.Advance(minutes(6));  // never 3 failures within 10 minutes
  }
  EXPECT_TRUE(users_->Login("dave", "the right password", ""));
}

TEST_P(PolicyUsersOnBackendsTest, AddressIsLockedAcrossUserNames) {
  ASSERT_TRUE(users_->AddUser("erin", Role::kAuditor, "the right password", "t"));
  for (int i = 0; i < 5; ++i) {
    // Different (mostly unknown) names from one address: each name stays below its own limit.
    (void)users_->Login("probe" + std::to_string(i), "guess", "[2001:db8::7]:5555");
  }
  EXPECT_EQ(users_->Login("erin", "the right password", "[2001:db8::7]:6000").error(), ServiceErrc::kLockedOut);
  EXPECT_TRUE(users_->Login("erin", "the right password", "[2001:db8::8]:6000"));
  clock_.Advance(minutes(16));
  EXPECT_TRUE(users_->Login("erin", "the right password", "[2001:db8::7]:6000"));
}

TEST_P(PolicyUsersOnBackendsTest, SessionTokensAuthenticateExpireAndFollowTheUser) {
  ASSERT_TRUE(users_->AddUser("fay", Role::kApprover, "the right password", "t"));
  auto login = users_->Login("fay", "the right password", "");
  ASSERT_TRUE(login);
  auto caller = users_->Authenticate(login->token);
  ASSERT_TRUE(caller && *caller);
  EXPECT_EQ((*caller)->name, "fay");
  EXPECT_EQ((*caller)->role, Role::kApprover);
  EXPECT_EQ((*caller)->via, TokenKind::kSession);
  clock_.Advance(std::chrono::hours(1));
  EXPECT_FALSE(*users_->Authenticate(login->token)) << "expired session accepted";

  auto again = users_->Login("fay", "the right password", "");
  ASSERT_TRUE(again);
  ASSERT_TRUE(users_->RemoveUser("fay", "t"));
  EXPECT_FALSE(*users_->Authenticate(again->token)) << "a removed user's session accepted";
  EXPECT_FALSE(*users_->Authenticate("llpols_not-a-token"));
  EXPECT_FALSE(*users_->Authenticate("garbage"));
}

TEST_P(PolicyUsersOnBackendsTest, ApiTokensAreHashedNamedAndRevocable) {
  auto token = users_->CreateToken("gateway-1", Role::kAuditor, std::nullopt, "local-admin");
  ASSERT_TRUE(token);
  EXPECT_TRUE(token->token.starts_with("llpol_"));
  auto stored = store_->ListTokens(TokenKind::kApi);
  ASSERT_TRUE(stored);
  ASSERT_EQ(stored->size(), 1u);
  EXPECT_EQ((*stored)[0].token_hash.size(), 64u);
  EXPECT_NE((*stored)[0].token_hash, token->token);

  auto caller = users_->Authenticate(token->token);
  ASSERT_TRUE(caller && *caller);
  EXPECT_EQ((*caller)->name, "gateway-1");
  EXPECT_EQ((*caller)->via, TokenKind::kApi);

  EXPECT_EQ(users_->CreateToken("gateway-1", Role::kAdmin, std::nullopt, "t").error(), ServiceErrc::kAlreadyExists);
  ASSERT_TRUE(users_->RevokeToken("gateway-1", "local-admin"));
  EXPECT_FALSE(*users_->Authenticate(token->token)) << "revoked token accepted";
  EXPECT_EQ(users_->RevokeToken("gateway-1", "t").error(), ServiceErrc::kNotFound);
  EXPECT_TRUE(HasEvent("token_created"));
  EXPECT_TRUE(HasEvent("token_revoked"));

  auto listed = users_->ListTokens();
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_TRUE((*listed)[0].revoked_ms);
}

TEST_P(PolicyUsersOnBackendsTest, ApiTokenExpiry) {
  auto token = users_->CreateToken("short-lived", Role::kApprover, seconds(120), "t");
  ASSERT_TRUE(token);
  EXPECT_TRUE(*users_->Authenticate(token->token));
  clock_.Advance(seconds(121));
  EXPECT_FALSE(*users_->Authenticate(token->token));
  EXPECT_EQ(users_->CreateToken("too-long", Role::kApprover, std::chrono::hours(24 * 400), "t").error(),
            ServiceErrc::kInvalidArgument);
}

TEST(PolicyConfigTest, PlainHttpOnlyOnLoopback) {
  EXPECT_TRUE(PolicyConfig::Parse("", "t.toml").http_listen.empty());
  EXPECT_EQ(PolicyConfig::Parse("", "t.toml").https_listen, "0.0.0.0:8443");
  EXPECT_EQ(PolicyConfig::Parse("[listen]\nhttp = \"127.0.0.1:8090\"\n", "t.toml").http_listen, "127.0.0.1:8090");
  EXPECT_EQ(PolicyConfig::Parse("[listen]\nhttp = \"[::1]:8090\"\n", "t.toml").http_listen, "[::1]:8090");
  for (const char* address : {"0.0.0.0:8090", "192.0.2.1:8090", "[::]:8090", "example.com:8090"}) {
    try {
      (void)PolicyConfig::Parse(std::string("[listen]\nhttp = \"") + address + "\"\n", "t.toml");
      ADD_FAILURE() << address << " accepted for plain HTTP";
    } catch (const config::ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("listen.http"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("loopback"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW((void)PolicyConfig::Parse("[store]\nbackend = \"oracle\"\n", "t.toml"), config::ConfigError);
  EXPECT_THROW((void)PolicyConfig::Parse("[login]\nmin_password_length = 4\n", "t.toml"), config::ConfigError);
  EXPECT_THROW((void)PolicyConfig::Parse("[listen]\nhttps = \"nonsense\"\n", "t.toml"), config::ConfigError);
}

}  // namespace
}  // namespace lifeline::policy
