// The real `lifeline policy run` on PostgreSQL (store.backend = "postgresql"): users and tokens made
// with the CLI on the database, two policy-manager processes serving from it at once, token
// revocation seen by both, and `lifeline audit verify|export --config` reading one audit chain that
// both appended to. Also the start-up errors: a missing url, and an unreachable server named in one
// log line without the password.
#include "support/harness.h"
#include "support/policy_harness.h"
#include "support/postgres_server.h"
#include "transport/http_client.h"

#include <boost/json.hpp>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <regex>

namespace lifeline::testing {
namespace {

namespace json = boost::json;

const auto* const postgres_environment = ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);

class PostgresPolicyService : public ::testing::Test {
 protected:
  void SetUp() override {
    PostgresServer* server = SharedPostgres();
    ASSERT_NE(server, nullptr) << "the test PostgreSQL server did not start (see above)";
    auto pki = RunLifeline({"pki", "init", "--dir", (dir_ / "pki").string(), "--name", "127.0.0.1"});
    ASSERT_EQ(pki.exit_code, 0) << pki.output;
    WriteFile(dir_ / "store-url", server->CreateDatabase() + "\n");
    WriteConfig(fmt::format("backend = \"postgresql\"\npostgresql.url_file = \"{}\"\npostgresql.pool_size = 3\n",
                            (dir_ / "store-url").string()));
    WriteFile(dir_ / "password", "approver's long password\n");
  }
  void TearDown() override {
    for (auto& process : processes_) {
      process.Terminate();
    }
  }

  void WriteConfig(const std::string& store_table) {
    WriteFile(config(), "[policy]\ndata_dir = \"" + (dir_ / "data").string() +
                            "\"\n[listen]\nhttps = \"127.0.0.1:0\"\n[tls]\ncert_file = \"" +
                            (dir_ / "pki" / "home.crt").string() + "\"\nkey_file = \"" +
                            (dir_ / "pki" / "home.key").string() + "\"\n[store]\n" + store_table);
  }
  fs::path config() const { return dir_ / "policy.toml"; }

  /// Starts one more `lifeline policy run`; returns its HTTPS port.
  int Start() {
    const fs::path log = dir_ / fmt::format("policy-{}.log", processes_.size());
    auto process = cli::Subprocess::Spawn({LIFELINE_BINARY, "policy", "run", "--config", config().string()}, log);
    EXPECT_TRUE(process);
    if (!process) {
      return 0;
    }
    processes_.push_back(std::move(*process));
    const std::regex listening("listening on https://127\\.0\\.0\\.1:([0-9]+)");
    int port = 0;
    EXPECT_TRUE(Eventually(
        [&] {
          std::smatch m;
          const std::string text = ReadFile(log);
          if (std::regex_search(text, m, listening)) {
            port = std::stoi(m[1]);
            return true;
          }
          return false;
        },
        std::chrono::seconds(20)))
        << ReadFile(log);
    return port;
  }

  using Answer = ApiAnswer;
  Answer Call(int port, const std::string& method, const std::string& path, const std::string& token = "",
              const std::string& body = "") {
    auto answer = CallApi(dir_ / "pki" / "ca.crt", "https://127.0.0.1:" + std::to_string(port), method, path, token,
                          body);
    EXPECT_TRUE(answer.error.empty()) << answer.error;
    return answer;
  }

  TempDir dir_;
  std::vector<cli::Subprocess> processes_;
};

TEST_F(PostgresPolicyService, TwoProcessesShareUsersTokensAndOneAuditChain) {
  auto added = RunLifeline({"policy", "users", "add", "anna", "--role", "approver", "--password-file",
                            (dir_ / "password").string(), "--config", config().string()});
  ASSERT_EQ(added.exit_code, 0) << added.output;
  auto token = RunLifeline({"policy", "tokens", "create", "audit-reader", "--role", "auditor", "--config",
                            config().string()});
  ASSERT_EQ(token.exit_code, 0) << token.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(token.output, m, std::regex("llpol_[A-Za-z0-9_-]{43}"))) << token.output;
  const std::string auditor_token = m[0];
  // Nothing of the store lands in data_dir: only the audit signing key does.
  EXPECT_FALSE(fs::exists(dir_ / "data" / "policy.db"));
  EXPECT_FALSE(fs::exists(dir_ / "data" / "audit.db"));
  EXPECT_TRUE(fs::exists(dir_ / "data" / "audit-sign.key"));

  const int first = Start();
  const int second = Start();
  ASSERT_NE(first, 0);
  ASSERT_NE(second, 0);
  EXPECT_NE(ReadFile(dir_ / "policy-0.log").find("PostgreSQL database"), std::string::npos)
      << ReadFile(dir_ / "policy-0.log");

  // Logins on both: each appends its audit records to the one chain.
  for (int round = 0; round < 3; ++round) {
    for (int port : {first, second}) {
      auto login = Call(port, "POST", "/v1/login", "",
                        json::serialize(json::object{{"user", "anna"}, {"password", "approver's long password"}}));
      ASSERT_EQ(login.status, 200) << json::serialize(login.body);
      auto me = Call(port, "GET", "/v1/whoami", std::string(login.body.at("token").as_string()));
      EXPECT_EQ(me.status, 200);
      EXPECT_EQ(me.body.at("role").as_string(), "approver");
    }
  }
  EXPECT_EQ(Call(first, "GET", "/v1/whoami", auditor_token).status, 200);
  EXPECT_EQ(Call(second, "GET", "/v1/whoami", auditor_token).status, 200);

  // A policy stored through one is served by the other within its peer poll (about a second).
  auto admin = RunLifeline({"policy", "tokens", "create", "policy-admin", "--role", "admin", "--config",
                            config().string()});
  ASSERT_EQ(admin.exit_code, 0) << admin.output;
  ASSERT_TRUE(std::regex_search(admin.output, m, std::regex("llpol_[A-Za-z0-9_-]{43}"))) << admin.output;
  const std::string admin_token = m[0];
  auto put = Call(second, "PUT", "/v1/policies", admin_token,
                  R"({"groups": [], "rules": [{"id": 9, "activity": "connect_home", "scope": {"kind": "site"},
                      "action": "always_allow"}], "grants": []})");
  ASSERT_EQ(put.status, 200) << json::serialize(put.body);
  EXPECT_EQ(put.body.at("version").as_int64(), 1);
  EXPECT_TRUE(Eventually(
      [&] {
        auto got = Call(first, "GET", "/v1/policies", admin_token);
        return got.status == 200 && got.body.at("version").as_int64() == 1;
      },
      std::chrono::seconds(10)));
  // The version check sees the other's change at once: version 2 stored through the first makes a
  // set written against version 1 a conflict on the second.
  const std::string v1_set = R"({"version": 1, "groups": [], "rules": [], "grants": []})";
  auto next = Call(first, "PUT", "/v1/policies", admin_token, v1_set);
  ASSERT_EQ(next.status, 200) << json::serialize(next.body);
  EXPECT_EQ(next.body.at("version").as_int64(), 2);
  auto stale = Call(second, "PUT", "/v1/policies", admin_token, v1_set);
  EXPECT_EQ(stale.status, 409) << json::serialize(stale.body);
  EXPECT_EQ(stale.body.at("version").as_int64(), 2) << json::serialize(stale.body);

  // Revoked with the CLI while both run: refused by both at once.
  auto revoked = RunLifeline({"policy", "tokens", "revoke", "audit-reader", "--config", config().string()});
  ASSERT_EQ(revoked.exit_code, 0) << revoked.output;
  EXPECT_EQ(Call(first, "GET", "/v1/whoami", auditor_token).status, 401);
  EXPECT_EQ(Call(second, "GET", "/v1/whoami", auditor_token).status, 401);

  auto users = RunLifeline({"policy", "users", "list", "--json", "--config", config().string()});
  ASSERT_EQ(users.exit_code, 0) << users.output;
  EXPECT_NE(users.output.find("\"anna\""), std::string::npos) << users.output;
  auto tokens = RunLifeline({"policy", "tokens", "list", "--config", config().string()});
  ASSERT_EQ(tokens.exit_code, 0) << tokens.output;
  EXPECT_NE(tokens.output.find("audit-reader"), std::string::npos) << tokens.output;

  // One chain with every record: user add, token creates and revoke, six logins, two policy changes.
  const std::string public_key = (dir_ / "data" / "audit-sign.key.pub").string();
  auto verified = RunLifeline({"audit", "verify", "--config", config().string(), "--public-key", public_key});
  EXPECT_EQ(verified.exit_code, 0) << verified.output;
  EXPECT_NE(verified.output.find("the log is untouched"), std::string::npos) << verified.output;
  std::smatch count;
  ASSERT_TRUE(std::regex_search(verified.output, count, std::regex("([0-9]+) records"))) << verified.output;
  EXPECT_GE(std::stoi(count[1]), 9) << verified.output;

  const fs::path exported = dir_ / "audit.jsonl";
  auto exporting = RunLifeline({"audit", "export", "--config", config().string(), "--out", exported.string()});
  ASSERT_EQ(exporting.exit_code, 0) << exporting.output;
  auto offline = RunLifeline({"audit", "verify", "--export", exported.string(), "--public-key", public_key});
  EXPECT_EQ(offline.exit_code, 0) << offline.output;
  EXPECT_NE(offline.output.find(std::string(count[1]) + " records"), std::string::npos) << offline.output;
}

TEST_F(PostgresPolicyService, MissingUrlAndUnreachableServerAreClearErrors) {
  WriteConfig("backend = \"postgresql\"\n");
  auto missing = RunLifeline({"policy", "run", "--config", config().string()}, std::chrono::seconds(30));
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  EXPECT_NE(missing.output.find("store.postgresql.url"), std::string::npos) << missing.output;

  // Nothing listens on port 1 of loopback: refused at once. The password must not be logged.
  WriteConfig(
      "backend = \"postgresql\"\npostgresql.url = \"postgresql://lifeline:s3cret-pw@127.0.0.1:1/policy?connect_timeout=5\"\n");
  auto unreachable = RunLifeline({"policy", "run", "--config", config().string()}, std::chrono::seconds(30));
  EXPECT_EQ(unreachable.exit_code, 1) << unreachable.output;
  EXPECT_NE(unreachable.output.find("cannot connect to the PostgreSQL database of store.postgresql.url"),
            std::string::npos)
      << unreachable.output;
  EXPECT_NE(unreachable.output.find("database 'policy' on 127.0.0.1:1 as 'lifeline'"), std::string::npos)
      << unreachable.output;
  EXPECT_EQ(unreachable.output.find("s3cret-pw"), std::string::npos) << unreachable.output;
}

}  // namespace
}  // namespace lifeline::testing
