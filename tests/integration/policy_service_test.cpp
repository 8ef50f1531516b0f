// The real `lifeline policy run` process: users and tokens made with the CLI on its store, login and
// role checks over HTTPS, lockout, token revocation while it runs, and plain HTTP: served on loopback
// when configured (curl plays the local reverse proxy), refused off loopback.
#include "support/harness.h"
#include "support/policy_harness.h"
#include "transport/http_client.h"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <regex>

namespace lifeline::testing {
namespace {

namespace json = boost::json;

class PolicyService : public ::testing::Test {
 protected:
  void SetUp() override {
    auto pki = RunLifeline({"pki", "init", "--dir", (dir_ / "pki").string(), "--name", "127.0.0.1"});
    ASSERT_EQ(pki.exit_code, 0) << pki.output;
    WriteFile(config(), "[policy]\ndata_dir = \"" + (dir_ / "data").string() +
                            "\"\n[listen]\nhttps = \"127.0.0.1:0\"\n[tls]\ncert_file = \"" +
                            (dir_ / "pki" / "home.crt").string() + "\"\nkey_file = \"" +
                            (dir_ / "pki" / "home.key").string() +
                            "\"\n[login]\nmax_failures_per_user = 3\nlockout = \"1h\"\n");
    WriteFile(dir_ / "password", "approver's long password\n");
  }
  void TearDown() override {
    if (process_) {
      process_->Terminate();
    }
  }
  fs::path config() const { return dir_ / "policy.toml"; }

  void Start() {
    auto process = cli::Subprocess::Spawn({LIFELINE_BINARY, "policy", "run", "--config", config().string()},
                                          dir_ / "policy.log");
    ASSERT_TRUE(process);
    process_.emplace(std::move(*process));
    const std::regex listening("listening on https://127\\.0\\.0\\.1:([0-9]+)");
    ASSERT_TRUE(Eventually(
        [&] {
          std::smatch m;
          const std::string log = ReadFile(dir_ / "policy.log");
          if (std::regex_search(log, m, listening)) {
            port_ = std::stoi(m[1]);
            return true;
          }
          return false;
        },
        std::chrono::seconds(20)))
        << ReadFile(dir_ / "policy.log");
  }

  using Answer = ApiAnswer;
  Answer Call(const std::string& method, const std::string& path, const std::string& token = "",
              const std::string& body = "") {
    auto answer = CallApi(dir_ / "pki" / "ca.crt", "https://127.0.0.1:" + std::to_string(port_), method, path, token,
                          body);
    EXPECT_TRUE(answer.error.empty()) << answer.error;
    return answer;
  }
  Answer LoginAs(const std::string& user, const std::string& password) {
    return Call("POST", "/v1/login", "", json::serialize(json::object{{"user", user}, {"password", password}}));
  }

  TempDir dir_;
  std::optional<cli::Subprocess> process_;
  int port_ = 0;
};

TEST_F(PolicyService, UsersTokensLoginRolesAndLockout) {
  auto added = RunLifeline({"policy", "users", "add", "anna", "--role", "approver", "--password-file",
                            (dir_ / "password").string(), "--config", config().string()});
  ASSERT_EQ(added.exit_code, 0) << added.output;
  auto token = RunLifeline({"policy", "tokens", "create", "audit-reader", "--role", "auditor", "--config",
                            config().string()});
  ASSERT_EQ(token.exit_code, 0) << token.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(token.output, m, std::regex("llpol_[A-Za-z0-9_-]{43}"))) << token.output;
  const std::string auditor_token = m[0];

  ASSERT_NO_FATAL_FAILURE(Start());

  auto login = LoginAs("anna", "approver's long password");
  ASSERT_EQ(login.status, 200) << json::serialize(login.body);
  const std::string session(login.body.at("token").as_string());
  auto me = Call("GET", "/v1/whoami", session);
  EXPECT_EQ(me.status, 200);
  EXPECT_EQ(me.body.at("role").as_string(), "approver");

  auto auditor = Call("GET", "/v1/whoami", auditor_token);
  EXPECT_EQ(auditor.status, 200);
  EXPECT_EQ(auditor.body.at("name").as_string(), "audit-reader");
  EXPECT_EQ(Call("GET", "/v1/whoami").status, 401);

  // Revoked with the CLI while the service runs: refused at once.
  auto revoked = RunLifeline({"policy", "tokens", "revoke", "audit-reader", "--config", config().string()});
  ASSERT_EQ(revoked.exit_code, 0) << revoked.output;
  EXPECT_EQ(Call("GET", "/v1/whoami", auditor_token).status, 401);

  // Three wrong passwords lock the name; the right one is then refused too.
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(LoginAs("anna", "wrong password " + std::to_string(i)).status, 401);
  }
  EXPECT_EQ(LoginAs("anna", "approver's long password").status, 429);
  EXPECT_EQ(Call("GET", "/v1/whoami", session).status, 200) << "a lockout does not end existing sessions";

  // Nothing secret in the store file.
  const std::string store = ReadFile(dir_ / "data" / "policy.db") + ReadFile(dir_ / "data" / "policy.db-wal");
  EXPECT_EQ(store.find("approver's long password"), std::string::npos);
  EXPECT_EQ(store.find(session), std::string::npos);
  EXPECT_EQ(store.find(auditor_token), std::string::npos);
  EXPECT_NE(store.find("$argon2id$"), std::string::npos);

  auto listed = RunLifeline({"policy", "users", "list", "--json", "--config", config().string()});
  EXPECT_EQ(listed.exit_code, 0);
  EXPECT_NE(listed.output.find("\"anna\""), std::string::npos) << listed.output;
}

// Logins, failed logins and lockouts are audit records; an auditor exports the log over the API and
// `lifeline audit verify` checks the export offline against the service's public key.
TEST_F(PolicyService, LoginEventsAreInTheAuditLogAndTheExportVerifies) {
  auto added = RunLifeline({"policy", "users", "add", "anna", "--role", "approver", "--password-file",
                            (dir_ / "password").string(), "--config", config().string()});
  ASSERT_EQ(added.exit_code, 0) << added.output;
  auto token = RunLifeline({"policy", "tokens", "create", "audit-reader", "--role", "auditor", "--config",
                            config().string()});
  ASSERT_EQ(token.exit_code, 0) << token.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(token.output, m, std::regex("llpol_[A-Za-z0-9_-]{43}"))) << token.output;
  const std::string auditor_token = m[0];
  ASSERT_NO_FATAL_FAILURE(Start());

  EXPECT_EQ(LoginAs("anna", "approver's long password").status, 200);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(LoginAs("anna", "wrong password " + std::to_string(i)).status, 401);
  }
  EXPECT_EQ(LoginAs("anna", "approver's long password").status, 429);

  auto exported = Call("GET", "/v1/audit?format=jsonl", auditor_token);
  ASSERT_EQ(exported.status, 200);
  ASSERT_TRUE(exported.body.is_string());
  const std::string jsonl(exported.body.as_string());
  EXPECT_NE(jsonl.find("login_failed"), std::string::npos) << jsonl;
  EXPECT_NE(jsonl.find("lockout"), std::string::npos) << jsonl;
  WriteFile(dir_ / "audit.jsonl", jsonl);
  auto verified = RunLifeline({"audit", "verify", "--export", (dir_ / "audit.jsonl").string(), "--public-key",
                               (dir_ / "data" / "audit-sign.key.pub").string()});
  EXPECT_EQ(verified.exit_code, 0) << verified.output;
  EXPECT_EQ(Call("GET", "/v1/audit", "").status, 401);
}

// `lifeline policy set|show` against the real service with CLI-made tokens: versions, the
// optimistic check through `show --json`, every problem of an invalid set, roles, usage errors. The
// CLI's user and token changes are audit records too (the local store path wires the audit log).
TEST_F(PolicyService, PolicySetAndShowThroughTheCli) {
  auto make_token = [&](const std::string& name, const std::string& role) {
    auto made = RunLifeline({"policy", "tokens", "create", name, "--role", role, "--config", config().string()});
    EXPECT_EQ(made.exit_code, 0) << made.output;
    std::smatch m;
    EXPECT_TRUE(std::regex_search(made.output, m, std::regex("llpol_[A-Za-z0-9_-]{43}"))) << made.output;
    WriteFile(dir_ / (name + ".token"), std::string(m[0]) + "\n");
    return dir_ / (name + ".token");
  };
  const fs::path admin = make_token("policy-admin", "admin");
  const fs::path auditor = make_token("policy-reader", "auditor");
  ASSERT_NO_FATAL_FAILURE(Start());
  const std::string url = "https://127.0.0.1:" + std::to_string(port_);
  const std::string ca = (dir_ / "pki" / "ca.crt").string();
  auto policy = [&](std::vector<std::string> args, const fs::path& token) {
    args.insert(args.begin(), "policy");
    for (const std::string& a : std::vector<std::string>{"--url", url, "--ca-file", ca, "--token-file", token.string()}) {
      args.push_back(a);
    }
    return RunLifeline(args);
  };

  WriteFile(dir_ / "policy.json", R"({"groups": [{"name": "rack-a", "serials": ["SN41000"]}],
    "rules": [{"id": 7, "activity": "remote_session", "application": "ssh",
               "scope": {"kind": "group", "name": "rack-a"}, "action": "ask_for_approval", "ask_timeout_s": 600},
              {"id": 9, "activity": "connect_home", "scope": {"kind": "site"}, "action": "always_allow"}]})");
  auto set = policy({"set", (dir_ / "policy.json").string()}, admin);
  ASSERT_EQ(set.exit_code, 0) << set.output;
  EXPECT_NE(set.output.find("stored policy version 1"), std::string::npos) << set.output;

  auto show = policy({"show"}, auditor);
  ASSERT_EQ(show.exit_code, 0) << show.output;
  EXPECT_NE(show.output.find("policy version 1"), std::string::npos) << show.output;
  EXPECT_NE(show.output.find("by policy-admin"), std::string::npos) << show.output;
  EXPECT_NE(show.output.find("rack-a"), std::string::npos) << show.output;
  EXPECT_NE(show.output.find("ask_for_approval (600 s)"), std::string::npos) << show.output;

  // show --json gives the set with its version: edited and set, it becomes version 2; set again, it
  // is a conflict (version 1 is no longer current).
  auto json_show = policy({"show", "--json"}, auditor);
  ASSERT_EQ(json_show.exit_code, 0) << json_show.output;
  const auto brace = json_show.output.find('{');
  ASSERT_NE(brace, std::string::npos) << json_show.output;
  WriteFile(dir_ / "current.json", json_show.output.substr(brace));
  EXPECT_EQ(json::parse(json_show.output.substr(brace)).at("version").as_int64(), 1);
  auto second = policy({"set", (dir_ / "current.json").string()}, admin);
  EXPECT_EQ(second.exit_code, 0) << second.output;
  EXPECT_NE(second.output.find("stored policy version 2"), std::string::npos) << second.output;
  auto conflict = policy({"set", (dir_ / "current.json").string()}, admin);
  EXPECT_EQ(conflict.exit_code, 1) << conflict.output;
  EXPECT_NE(conflict.output.find("version_conflict (409)"), std::string::npos) << conflict.output;

  // Every problem of an invalid set, one per line.
  WriteFile(dir_ / "bad.json", R"({"rules": [
    {"id": 1, "activity": "remote_session", "scope": {"kind": "group", "name": "nope"}, "action": "never_allow"},
    {"id": 1, "activity": "file_transfer", "scope": {"kind": "site"}, "action": "ask_for_approval", "ask_timeout_s": 2}]})");
  auto invalid = policy({"set", (dir_ / "bad.json").string()}, admin);
  EXPECT_EQ(invalid.exit_code, 1) << invalid.output;
  EXPECT_NE(invalid.output.find("invalid_policy (400)"), std::string::npos) << invalid.output;
  EXPECT_NE(invalid.output.find("'nope'"), std::string::npos) << invalid.output;
  EXPECT_NE(invalid.output.find("  rule 1"), std::string::npos) << invalid.output;

  auto forbidden = policy({"set", (dir_ / "policy.json").string()}, auditor);
  EXPECT_EQ(forbidden.exit_code, 1) << forbidden.output;
  EXPECT_NE(forbidden.output.find("forbidden (403)"), std::string::npos) << forbidden.output;
  EXPECT_EQ(policy({"set", (dir_ / "missing.json").string()}, admin).exit_code, 2);
  auto no_token = RunLifeline({"policy", "show", "--url", url, "--ca-file", ca});
  EXPECT_EQ(no_token.exit_code, 2) << no_token.output;
  EXPECT_NE(no_token.output.find("LIFELINE_POLICY_TOKEN"), std::string::npos) << no_token.output;
  auto show_after = policy({"show"}, auditor);
  EXPECT_NE(show_after.output.find("policy version 2"), std::string::npos) << show_after.output;

  // The audit log has both changes, and the tokens the CLI made before the service started.
  const std::string admin_token = ReadFile(admin).substr(0, ReadFile(admin).find('\n'));
  auto exported = Call("GET", "/v1/audit?format=jsonl", admin_token);
  ASSERT_EQ(exported.status, 200);
  ASSERT_TRUE(exported.body.is_string());
  const std::string jsonl(exported.body.as_string());
  EXPECT_NE(jsonl.find("\"kind\":\"policy_change\""), std::string::npos) << jsonl;
  EXPECT_NE(jsonl.find("token_created"), std::string::npos) << jsonl;
  EXPECT_NE(jsonl.find("local-admin"), std::string::npos) << jsonl;
}

TEST_F(PolicyService, PlainHttpOnLoopbackServesTheSameApiBesideHttps) {
  auto added = RunLifeline({"policy", "users", "add", "anna", "--role", "approver", "--password-file",
                            (dir_ / "password").string(), "--config", config().string()});
  ASSERT_EQ(added.exit_code, 0) << added.output;
  std::string toml = ReadFile(config());
  const std::string https_line = "https = \"127.0.0.1:0\"\n";
  const auto at = toml.find(https_line);
  ASSERT_NE(at, std::string::npos) << toml;
  toml.insert(at + https_line.size(), "http = \"127.0.0.1:0\"\n");
  WriteFile(config(), toml);
  ASSERT_NO_FATAL_FAILURE(Start());

  int http_port = 0;
  const std::regex plain("plain HTTP on http://127\\.0\\.0\\.1:([0-9]+)");
  ASSERT_TRUE(Eventually(
      [&] {
        std::smatch m;
        const std::string log = ReadFile(dir_ / "policy.log");
        if (std::regex_search(log, m, plain)) {
          http_port = std::stoi(m[1]);
          return true;
        }
        return false;
      },
      std::chrono::seconds(10)))
      << ReadFile(dir_ / "policy.log");
  EXPECT_NE(ReadFile(dir_ / "policy.log").find("passwords and tokens cross it unencrypted"), std::string::npos);

  // curl prints the body, then the status on a line of its own.
  auto plain_call = [&](const std::string& method, const std::string& path, const std::string& token,
                        const std::string& body) -> Answer {
    std::vector<std::string> argv{"/usr/bin/curl", "-sS", "--max-time", "20", "-X", method, "-w", "\n%{http_code}"};
    if (!token.empty()) {
      argv.insert(argv.end(), {"-H", "Authorization: Bearer " + token});
    }
    if (!body.empty()) {
      argv.insert(argv.end(), {"-H", "Content-Type: application/json", "--data-binary", body});
    }
    argv.push_back("http://127.0.0.1:" + std::to_string(http_port) + path);
    auto result = RunCommand(argv);
    EXPECT_EQ(result.exit_code, 0) << result.output;
    const auto newline = result.output.rfind('\n');
    if (result.exit_code != 0 || newline == std::string::npos) {
      return {};
    }
    boost::system::error_code ec;
    json::value parsed = json::parse(result.output.substr(0, newline), ec);
    return {std::stoi(result.output.substr(newline + 1)), ec ? json::value(result.output.substr(0, newline)) : parsed};
  };

  auto login = plain_call("POST", "/v1/login", "",
                          json::serialize(json::object{{"user", "anna"}, {"password", "approver's long password"}}));
  ASSERT_EQ(login.status, 200) << json::serialize(login.body);
  const std::string session(login.body.at("token").as_string());
  auto me = plain_call("GET", "/v1/whoami", session, "");
  EXPECT_EQ(me.status, 200);
  EXPECT_EQ(me.body.at("role").as_string(), "approver") << json::serialize(me.body);
  // No client certificates without TLS: the gateways' API refuses every caller there.
  EXPECT_EQ(plain_call("GET", "/v1/gateway/watch", "", "").status, 401);

  // The HTTPS listener still serves, and both share the sessions.
  EXPECT_EQ(Call("GET", "/v1/whoami", session).status, 200);
  EXPECT_EQ(LoginAs("anna", "approver's long password").status, 200);
}

TEST_F(PolicyService, PlainHttpOffLoopbackIsAConfigError) {
  WriteFile(dir_ / "bad.toml", "[listen]\nhttp = \"0.0.0.0:8090\"\n");
  auto result = RunLifeline({"policy", "run", "--config", (dir_ / "bad.toml").string()});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.output.find("listen.http"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("loopback"), std::string::npos) << result.output;
}

}  // namespace
}  // namespace lifeline::testing
