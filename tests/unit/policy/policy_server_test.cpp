// The policy manager's HTTPS API base over real TLS on loopback: login, bearer tokens, role checks
// on registered routes, 401/403 bodies, lockout over HTTP.
#include "policy/policy_server.h"
#include "support/fake_clock.h"
#include "support/temp_dir.h"
#include "transport/http_client.h"
#include "../transport/test_pki.h"

#include <boost/json.hpp>
#include <gtest/gtest.h>
#include <sodium.h>

namespace lifeline::policy {
namespace {

namespace json = boost::json;
using lifeline::testing::FakeClock;
using lifeline::testing::TempDir;
using transport::ClientRequest;
using transport::HttpResponse;

class PolicyServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = OpenSqlitePolicyStore(dir_ / "policy.db");
    ASSERT_TRUE(store);
    store_ = std::move(*store);
    UsersOptions options;
    options.max_failures_per_user = 3;
    options.hash_ops_limit = crypto_pwhash_OPSLIMIT_MIN;
    options.hash_mem_limit = crypto_pwhash_MEMLIMIT_MIN;
    users_ = std::make_unique<PolicyUsers>(*store_, clock_, options);
    users_->SetSecurityEventSink([this](const SecurityEvent& e) {
      std::lock_guard lock(events_mutex_);
      events_.push_back(e.kind);
    });
    server_ = std::make_unique<PolicyServer>(*users_);
    // What the approvals part will register: only approvers (and admins) may decide.
    server_->Route("POST", "/v1/requests", Role::kApprover, [](const transport::HttpRequest& r, const Caller& c) {
      HttpResponse response;
      response.body = json::serialize(json::object{{"decided_by", c.name}, {"target", r.target}});
      return response;
    });
    server_->Route("GET", "/v1/requests", Role::kAuditor, [](const transport::HttpRequest&, const Caller&) {
      HttpResponse response;
      response.body = "[]";
      return response;
    });
    const auto& pki = transport::testpki::SharedPki();
    transport::ServerOptions options_tls;
    options_tls.listen = "127.0.0.1:0";
    options_tls.tls.cert_file = pki.server_cert.string();
    options_tls.tls.key_file = pki.server_key.string();
    options_tls.client_certs = transport::ClientCertPolicy::kNone;
    ASSERT_TRUE(server_->Start(options_tls));
    client_ = std::make_unique<transport::HttpClient>(transport::ClientTls{pki.ca_cert.string(), "", ""});
  }
  void TearDown() override {
    if (server_) {
      server_->Stop();
    }
  }

  struct Answer {
    int status = 0;
    json::value body;
  };
  Answer Call(const std::string& method, const std::string& path, const std::string& token = "",
              const std::string& body = "") {
    ClientRequest request;
    request.method = method;
    request.url = "https://127.0.0.1:" + std::to_string(server_->LocalPort()) + path;
    request.body = body;
    request.content_type = body.empty() ? "" : "application/json";
    if (!token.empty()) {
      request.headers.emplace_back("Authorization", "Bearer " + token);
    }
    auto response = client_->Send(request);
    EXPECT_TRUE(response) << (response ? "" : response.error().message());
    if (!response) {
      return {};
    }
    boost::system::error_code ec;
    json::value parsed = json::parse(response->body, ec);
    return {response->status, ec ? json::value(response->body) : parsed};
  }
  std::string Login(const std::string& user, const std::string& password) {
    auto answer = Call("POST", "/v1/login", "",
                       json::serialize(json::object{{"user", user}, {"password", password}}));
    EXPECT_EQ(answer.status, 200) << json::serialize(answer.body);
    return answer.status == 200 ? std::string(answer.body.at("token").as_string()) : std::string();
  }
  bool HasEvent(const std::string& kind) {
    std::lock_guard lock(events_mutex_);
    return std::find(events_.begin(), events_.end(), kind) != events_.end();
  }

  TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<PolicyStore> store_;
  std::unique_ptr<PolicyUsers> users_;
  std::unique_ptr<PolicyServer> server_;
  std::unique_ptr<transport::HttpClient> client_;
  std::mutex events_mutex_;
  std::vector<std::string> events_;
};

TEST_F(PolicyServerTest, LoginAndWhoami) {
  ASSERT_TRUE(users_->AddUser("alice", Role::kApprover, "alice's long password", "t"));
  const std::string token = Login("alice", "alice's long password");
  ASSERT_FALSE(token.empty());
  auto me = Call("GET", "/v1/whoami", token);
  EXPECT_EQ(me.status, 200);
  EXPECT_EQ(me.body.at("name").as_string(), "alice");
  EXPECT_EQ(me.body.at("role").as_string(), "approver");
  EXPECT_EQ(me.body.at("via").as_string(), "session");

  EXPECT_EQ(Call("POST", "/v1/logout", token).status, 200);
  EXPECT_EQ(Call("GET", "/v1/whoami", token).status, 401);
  EXPECT_TRUE(HasEvent("logout"));
}

TEST_F(PolicyServerTest, MissingOrBadTokenIs401) {
  auto none = Call("GET", "/v1/whoami");
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(none.body.at("error").as_string(), "unauthorized");
  EXPECT_EQ(Call("GET", "/v1/whoami", "llpol_forged").status, 401);
  EXPECT_EQ(Call("POST", "/v1/login", "", "{\"user\": 1}").status, 400);
  EXPECT_EQ(Call("GET", "/v1/nothing-here", "x").status, 404);
  EXPECT_EQ(Call("DELETE", "/v1/whoami", "x").status, 405);
  // curl removes dot segments itself, so this one goes to the handler directly.
  transport::HttpRequest sneaky;
  sneaky.method = "GET";
  sneaky.target = "/v1/whoami/../requests";
  EXPECT_EQ(server_->Handle(sneaky).status, 400);
}

TEST_F(PolicyServerTest, AuditorTokenCannotCallApproverRoute) {
  auto auditor = users_->CreateToken("auditor-1", Role::kAuditor, std::nullopt, "t");
  auto approver = users_->CreateToken("approver-1", Role::kApprover, std::nullopt, "t");
  ASSERT_TRUE(auditor && approver);

  EXPECT_EQ(Call("GET", "/v1/requests", auditor->token).status, 200);  // reading is an auditor's job
  auto refused = Call("POST", "/v1/requests/42/approve", auditor->token, "{}");
  EXPECT_EQ(refused.status, 403);
  EXPECT_EQ(refused.body.at("error").as_string(), "forbidden");
  EXPECT_EQ(refused.body.at("needed_role").as_string(), "approver");
  EXPECT_NE(std::string(refused.body.at("message").as_string()).find("approver or admin"), std::string::npos)
      << json::serialize(refused.body);
  EXPECT_TRUE(HasEvent("access_denied"));

  auto allowed = Call("POST", "/v1/requests/42/approve", approver->token, "{}");
  EXPECT_EQ(allowed.status, 200);
  EXPECT_EQ(allowed.body.at("decided_by").as_string(), "approver-1");

  // Revoked: 401 from then on.
  ASSERT_TRUE(users_->RevokeToken("approver-1", "t"));
  EXPECT_EQ(Call("POST", "/v1/requests/42/approve", approver->token, "{}").status, 401);
}

TEST_F(PolicyServerTest, LockoutOverHttpAndItLifts) {
  ASSERT_TRUE(users_->AddUser("bob", Role::kAdmin, "bob's long password", "t"));
  const std::string wrong = json::serialize(json::object{{"user", "bob"}, {"password", "guess"}});
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Call("POST", "/v1/login", "", wrong).status, 401);
  }
  const std::string right = json::serialize(json::object{{"user", "bob"}, {"password", "bob's long password"}});
  auto locked = Call("POST", "/v1/login", "", right);
  EXPECT_EQ(locked.status, 429);
  EXPECT_EQ(locked.body.at("error").as_string(), "locked");
  clock_.Advance(users_->options().lockout + std::chrono::seconds(1));
  EXPECT_EQ(Call("POST", "/v1/login", "", right).status, 200);
}

TEST(PolicyServiceTest, RefusesConfiguredPlainHttp) {
  TempDir dir;
  auto config = PolicyConfig::Parse("[listen]\nhttp = \"127.0.0.1:0\"\nhttps = \"127.0.0.1:0\"\n", "t.toml");
  config.data_dir = dir.path().string();
  EXPECT_FALSE(PolicyService::Start(config));
}

}  // namespace
}  // namespace lifeline::policy
