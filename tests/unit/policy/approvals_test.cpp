// Approval requests through a real PolicyService over loopback HTTPS: a gateway (with a client
// certificate from the gateways' CA) asks, approvers decide with their tokens, requests expire at
// their deadline, the gateways' watch reports the decisions, everything survives a restart, and the
// approvers' email reaches a real SMTP server (scripts/mail-sink, aiosmtpd).
#include "policy/approval_email.h"
#include "policy/approvals.h"
#include "policy/policy_server.h"
#include "crypto/keys.h"
#include "crypto/pki.h"
#include "support/temp_dir.h"
#include "transport/http_client.h"
#include "unit/home/notify/sinks.h"

#include <boost/json.hpp>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <thread>

namespace lifeline::policy {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;
using lifeline::testing::MailSink;
using lifeline::testing::TempDir;

/// Polls `condition` every 50 ms until it holds or `timeout` passes.
bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) {
      return true;
    }
    std::this_thread::sleep_for(50ms);
  }
  return condition();
}

std::string RequestId(int n) { return fmt::format("{:032x}", 0xabc000 + n); }

/// A gateway's request body; `overrides` replaces or adds fields.
std::string RequestBody(const std::string& id, json::object overrides = {}) {
  json::object body{{"request_id", id},
                    {"engineer", "alice"},
                    {"device", "SN41000"},
                    {"model", "VSP G900"},
                    {"activity", "remote_session"},
                    {"application", "ssh"},
                    {"reason", "replace disk 3"},
                    {"service_request", "SR-1234"},
                    {"rule_id", 7},
                    {"timeout_s", 600},
                    {"requested_ms", 1795000000000}};
  for (const auto& [key, value] : overrides) {
    body[key] = value;
  }
  return json::serialize(body);
}

struct Answer {
  int status = 0;
  json::value body;
  std::string raw;
};

class ApprovalsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(crypto::InitPki(dir_ / "pki"));
    ca_ = (dir_ / "pki" / crypto::PkiPaths::kCaCert).string();
    gateway_ = IssueGateway({"acme", "dc1", "gw-1", ""}, "gw-1");
    other_gateway_ = IssueGateway({"acme", "dc1", "gw-2", ""}, "gw-2");
    mail_ = std::make_unique<MailSink>(dir_ / "mail");
    ASSERT_GT(mail_->port(), 0);
    Start();
    auto bob = service_->users().CreateToken("bob", Role::kApprover, std::nullopt, "test");
    auto alice = service_->users().CreateToken("Alice", Role::kApprover, std::nullopt, "test");
    auto audrey = service_->users().CreateToken("audrey", Role::kAuditor, std::nullopt, "test");
    ASSERT_TRUE(bob && alice && audrey);
    bob_ = bob->token;
    alice_ = alice->token;
    audrey_ = audrey->token;
  }
  void TearDown() override {
    if (service_) {
      service_->Stop();
    }
  }

  void Start() {
    PolicyConfig config;
    config.data_dir = (dir_ / "data").string();
    config.https_listen = "127.0.0.1:0";
    config.cert_file = (dir_ / "pki" / crypto::PkiPaths::kHomeCert).string();
    config.key_file = (dir_ / "pki" / crypto::PkiPaths::kHomeKey).string();
    config.client_ca_file = ca_;
    config.approvals_notify = {"approvers@example.com", "oncall@example.com"};
    config.approvals_url = "https://policy.acme.example:8443";
    config.smtp_url = mail_->url();
    config.smtp_from = "lifeline-policy@acme.example";
    config.smtp_starttls = "off";
    config.smtp_timeout = 5s;
    auto service = PolicyService::Start(config);
    ASSERT_TRUE(service) << service.error().message();
    service_ = std::move(*service);
  }
  void Restart() {
    service_->Stop();
    service_.reset();
    Start();
  }

  struct Identity {
    std::string cert, key;
  };
  Identity IssueGateway(const protocol::DeviceIdentity& identity, const std::string& name) {
    const std::string key = crypto::GeneratePrivateKeyPem();
    auto csr = crypto::MakeCsr(key, identity, crypto::PeerKind::kGateway);
    EXPECT_TRUE(csr);
    auto ca_pem = crypto::ReadSmallFile(ca_, 1 << 20);
    auto ca_key = crypto::ReadSmallFile(dir_ / "pki" / crypto::PkiPaths::kCaKey, 1 << 20, true);
    EXPECT_TRUE(ca_pem && ca_key);
    auto issued = crypto::IssueGatewayCertificate(*ca_pem, *ca_key, *csr, identity, {"127.0.0.1"}, 2);
    EXPECT_TRUE(issued);
    Identity out{(dir_ / (name + ".crt")).string(), (dir_ / (name + ".key")).string()};
    EXPECT_TRUE(crypto::WriteFileAtomically(out.cert, issued->pem, 0644));
    EXPECT_TRUE(crypto::WritePrivateKeyPem(out.key, key));
    return out;
  }

  std::string Url(const std::string& path) const {
    return "https://127.0.0.1:" + std::to_string(service_->server().LocalPort()) + path;
  }
  Answer Send(transport::ClientTls tls, const std::string& method, const std::string& path,
              const std::string& token, const std::string& body) {
    transport::HttpClient client(std::move(tls));
    transport::ClientRequest request;
    request.method = method;
    request.url = Url(path);
    request.body = body;
    request.content_type = body.empty() ? "" : "application/json";
    if (!token.empty()) {
      request.headers.emplace_back("Authorization", "Bearer " + token);
    }
    auto response = client.Send(request);
    EXPECT_TRUE(response) << (response ? "" : response.error().message());
    if (!response) {
      return {};
    }
    boost::system::error_code ec;
    json::value parsed = json::parse(response->body, ec);
    return {response->status, ec ? json::value(nullptr) : parsed, response->body};
  }
  /// A user's call with a bearer token.
  Answer Call(const std::string& method, const std::string& path, const std::string& token,
              const std::string& body = "") {
    return Send({ca_, "", ""}, method, path, token, body);
  }
  /// A gateway's call with its client certificate.
  Answer AsGateway(const Identity& gateway, const std::string& method, const std::string& path,
                   const std::string& body = "") {
    return Send({ca_, gateway.cert, gateway.key}, method, path, "", body);
  }
  Answer Ask(const std::string& id, json::object overrides = {}, const Identity* gateway = nullptr) {
    return AsGateway(gateway != nullptr ? *gateway : gateway_, "POST", "/v1/gateway/requests",
                     RequestBody(id, std::move(overrides)));
  }
  Answer Decide(const std::string& id, const std::string& action, const std::string& token,
                const std::string& comment = "") {
    return Call("POST", "/v1/requests/" + id + "/" + action, token,
                comment.empty() ? "" : json::serialize(json::object{{"comment", comment}}));
  }
  std::vector<AuditRecord> AuditOfKind(std::string_view kind) {
    std::vector<AuditRecord> out;
    auto records = service_->audit().Read(1);
    EXPECT_TRUE(records);
    for (auto& r : *records) {
      if (r.kind == kind) {
        out.push_back(std::move(r));
      }
    }
    return out;
  }

  TempDir dir_;
  std::string ca_;
  Identity gateway_, other_gateway_;
  std::unique_ptr<MailSink> mail_;
  std::unique_ptr<PolicyService> service_;
  std::string bob_, alice_, audrey_;
};

TEST_F(ApprovalsTest, GatewayAsksApproverApprovesWatchReportsIt) {
  const std::string id = RequestId(1);
  auto created = Ask(id);
  ASSERT_EQ(created.status, 201) << created.raw;
  const json::object& r = created.body.as_object();
  EXPECT_EQ(r.at("id").as_string(), id);
  EXPECT_EQ(r.at("gateway").as_string(), "acme/dc1/gw-1");
  EXPECT_EQ(r.at("engineer").as_string(), "alice");
  EXPECT_EQ(r.at("state").as_string(), "pending");
  EXPECT_EQ(r.at("rule_id").as_int64(), 7);
  EXPECT_EQ(r.at("requested_ms").as_int64(), 1795000000000);
  EXPECT_EQ(r.at("expires_ms").as_int64() - r.at("received_ms").as_int64(), 600'000);
  EXPECT_TRUE(r.at("decided_ms").is_null());

  // A retry after a lost answer: the same request, nothing new.
  auto again = Ask(id, {{"reason", "something else"}});
  EXPECT_EQ(again.status, 200) << again.raw;
  EXPECT_EQ(again.body.at("reason").as_string(), "replace disk 3");
  EXPECT_EQ(again.body.at("received_ms"), r.at("received_ms"));
  // Another gateway cannot take over the id.
  EXPECT_EQ(Ask(id, {}, &other_gateway_).status, 409);

  auto pending = Call("GET", "/v1/requests?state=pending", audrey_);
  ASSERT_EQ(pending.status, 200) << pending.raw;
  ASSERT_EQ(pending.body.at("requests").as_array().size(), 1u);
  EXPECT_EQ(Call("GET", "/v1/requests/" + id, audrey_).body.at("device").as_string(), "SN41000");

  // The gateway's watch before any decision: nothing to report.
  auto quiet = AsGateway(gateway_, "GET", "/v1/gateway/watch?policy_version=0&cursor=0&wait_s=0");
  ASSERT_EQ(quiet.status, 200) << quiet.raw;
  EXPECT_TRUE(quiet.body.at("decisions").as_array().empty());

  // A watch waiting when the decision is made answers at once.
  Answer woken;
  std::thread watch([&] {
    woken = AsGateway(gateway_, "GET", "/v1/gateway/watch?policy_version=0&cursor=0&wait_s=20");
  });
  std::this_thread::sleep_for(300ms);
  const auto decided_at = std::chrono::steady_clock::now();
  auto approved = Decide(id, "approve", bob_, "go ahead, SR-1234");
  watch.join();
  EXPECT_LT(std::chrono::steady_clock::now() - decided_at, 5s);
  ASSERT_EQ(approved.status, 200) << approved.raw;
  EXPECT_EQ(approved.body.at("state").as_string(), "approved");
  EXPECT_EQ(approved.body.at("decided_by").as_string(), "bob");
  EXPECT_EQ(approved.body.at("comment").as_string(), "go ahead, SR-1234");
  ASSERT_EQ(woken.status, 200) << woken.raw;
  const auto& decisions = woken.body.at("decisions").as_array();
  ASSERT_EQ(decisions.size(), 1u) << woken.raw;
  EXPECT_EQ(decisions[0].at("request_id").as_string(), id);
  EXPECT_EQ(decisions[0].at("state").as_string(), "approved");
  EXPECT_EQ(decisions[0].at("decided_by").as_string(), "bob");
  EXPECT_EQ(decisions[0].at("comment").as_string(), "go ahead, SR-1234");
  EXPECT_EQ(woken.body.at("cursor").as_int64(), decisions[0].at("seq").as_int64());
  // The other gateway hears nothing of it.
  auto other = AsGateway(other_gateway_, "GET", "/v1/gateway/watch?policy_version=0&cursor=0&wait_s=0");
  EXPECT_TRUE(other.body.at("decisions").as_array().empty()) << other.raw;

  // Decided once: no second decision either way.
  auto twice = Decide(id, "deny", bob_);
  EXPECT_EQ(twice.status, 409);
  EXPECT_EQ(twice.body.at("error").as_string(), "not_pending");
  EXPECT_EQ(twice.body.at("state").as_string(), "approved");
  EXPECT_TRUE(Call("GET", "/v1/requests?state=pending", audrey_).body.at("requests").as_array().empty());

  auto asked = AuditOfKind(audit_kind::kApprovalRequest);
  ASSERT_EQ(asked.size(), 1u);
  EXPECT_EQ(asked[0].source, "acme/dc1/gw-1");
  EXPECT_EQ(asked[0].actor, "alice");
  EXPECT_EQ(asked[0].subject, "SN41000");
  EXPECT_NE(asked[0].details.find("SR-1234"), std::string::npos);
  auto decided = AuditOfKind(audit_kind::kApprovalDecision);
  ASSERT_EQ(decided.size(), 1u);
  EXPECT_EQ(decided[0].actor, "bob");
  EXPECT_NE(decided[0].details.find("\"state\":\"approved\""), std::string::npos) << decided[0].details;
  EXPECT_NE(decided[0].details.find("go ahead, SR-1234"), std::string::npos);
}

TEST_F(ApprovalsTest, DenyOwnRequestRolesAndUnknownIds) {
  const std::string id = RequestId(2);
  ASSERT_EQ(Ask(id).status, 201);

  // The engineer "alice" holds an approver's token named "Alice": not for her own request.
  auto own = Decide(id, "approve", alice_);
  EXPECT_EQ(own.status, 403) << own.raw;
  EXPECT_EQ(own.body.at("error").as_string(), "own_request");
  EXPECT_EQ(Decide(id, "deny", alice_).status, 403);
  // An auditor reads but does not decide.
  auto auditor = Decide(id, "approve", audrey_);
  EXPECT_EQ(auditor.status, 403) << auditor.raw;
  EXPECT_EQ(auditor.body.at("error").as_string(), "forbidden");
  EXPECT_EQ(auditor.body.at("needed_role").as_string(), "approver");
  EXPECT_EQ(Decide(id, "approve", "").status, 401);
  EXPECT_EQ(Call("GET", "/v1/requests/" + id, audrey_).body.at("state").as_string(), "pending");

  EXPECT_EQ(Decide(RequestId(99), "approve", bob_).status, 404);
  EXPECT_EQ(Call("GET", "/v1/requests/" + RequestId(99), audrey_).status, 404);
  EXPECT_EQ(Decide(id, "maybe", bob_).status, 404);
  EXPECT_EQ(Call("GET", "/v1/requests?state=later", audrey_).status, 400);
  EXPECT_EQ(Call("POST", "/v1/requests/" + id + "/deny", bob_, "[1]").status, 400);
  EXPECT_EQ(Decide(id, "deny", bob_, "line one\nline two").status, 400);

  auto denied = Decide(id, "deny", bob_, "not during the freeze");
  ASSERT_EQ(denied.status, 200) << denied.raw;
  EXPECT_EQ(denied.body.at("state").as_string(), "denied");
  EXPECT_EQ(denied.body.at("decided_by").as_string(), "bob");
  EXPECT_EQ(Decide(id, "approve", bob_).status, 409);
  auto all = Call("GET", "/v1/requests", audrey_);
  ASSERT_EQ(all.body.at("requests").as_array().size(), 1u);
  EXPECT_EQ(Call("GET", "/v1/requests?state=denied", audrey_).body.at("requests").as_array().size(), 1u);
}

TEST_F(ApprovalsTest, GatewayRouteRefusesBadBodiesAndNonGateways) {
  const std::string id = RequestId(3);
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"not json", "{"},
      {"an array", "[]"},
      {"no id", RequestBody("")},
      {"short id", RequestBody("abc")},
      {"uppercase id", RequestBody("ABCDEF0123456789ABCDEF0123456789")},
      {"no engineer", RequestBody(id, {{"engineer", ""}})},
      {"engineer with a newline", RequestBody(id, {{"engineer", "eve\nInjected: header"}})},
      {"no device", RequestBody(id, {{"device", nullptr}})},
      {"unknown activity", RequestBody(id, {{"activity", "telnet"}})},
      {"application on a file transfer", RequestBody(id, {{"activity", "file_transfer"}})},
      {"timeout below 5 s", RequestBody(id, {{"timeout_s", 4}})},
      {"timeout above 24 h", RequestBody(id, {{"timeout_s", 86401}})},
      {"timeout as text", RequestBody(id, {{"timeout_s", "600"}})},
      {"negative rule", RequestBody(id, {{"rule_id", -1}})},
      {"long reason", RequestBody(id, {{"reason", std::string(1001, 'x')}})},
  };
  for (const auto& [what, body] : bad) {
    auto answer = AsGateway(gateway_, "POST", "/v1/gateway/requests", body);
    EXPECT_EQ(answer.status, 400) << what << ": " << answer.raw;
  }
  // The bounds themselves are fine, and other activities without an application.
  EXPECT_EQ(Ask(RequestId(4), {{"timeout_s", 5}}).status, 201);
  EXPECT_EQ(Ask(RequestId(5), {{"timeout_s", 86400}}).status, 201);
  EXPECT_EQ(Ask(RequestId(6), {{"activity", "file_transfer"}, {"application", nullptr}}).status, 201);

  // No certificate: 401, whatever token comes along; a user's certificate-less call cannot reach it.
  EXPECT_EQ(Send({ca_, "", ""}, "POST", "/v1/gateway/requests", bob_, RequestBody(id)).status, 401);
  EXPECT_EQ(Call("GET", "/v1/requests/" + id, audrey_).status, 404);
}

TEST_F(ApprovalsTest, UnansweredRequestExpiresAtItsDeadline) {
  const std::string id = RequestId(7);
  auto created = Ask(id, {{"timeout_s", 5}});
  ASSERT_EQ(created.status, 201) << created.raw;
  const std::int64_t expires_ms = created.body.at("expires_ms").as_int64();

  // The watch sleeps until the expiry wakes it.
  const auto started = std::chrono::steady_clock::now();
  auto woken = AsGateway(gateway_, "GET", "/v1/gateway/watch?policy_version=0&cursor=0&wait_s=20");
  const auto waited = std::chrono::steady_clock::now() - started;
  ASSERT_EQ(woken.status, 200) << woken.raw;
  ASSERT_EQ(woken.body.at("decisions").as_array().size(), 1u) << woken.raw;
  EXPECT_EQ(woken.body.at("decisions").as_array()[0].at("state").as_string(), "expired");
  EXPECT_GT(waited, 3s);
  EXPECT_LT(waited, 9s);

  auto stored = Call("GET", "/v1/requests/" + id, audrey_);
  EXPECT_EQ(stored.body.at("state").as_string(), "expired");
  EXPECT_GE(stored.body.at("decided_ms").as_int64(), expires_ms);
  EXPECT_LT(stored.body.at("decided_ms").as_int64(), expires_ms + 3000);
  auto late = Decide(id, "approve", bob_);
  EXPECT_EQ(late.status, 409);
  EXPECT_EQ(late.body.at("state").as_string(), "expired");
  auto expired = AuditOfKind(audit_kind::kApprovalExpired);
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0].subject, "SN41000");
  EXPECT_NE(expired[0].details.find(id), std::string::npos);
}

TEST_F(ApprovalsTest, DecisionSourceKeepsOrderPerGatewayAndCursor) {
  for (int n = 10; n < 13; ++n) {
    ASSERT_EQ(Ask(RequestId(n)).status, 201);
  }
  ASSERT_EQ(Ask(RequestId(13), {}, &other_gateway_).status, 201);
  ASSERT_EQ(Decide(RequestId(11), "approve", bob_).status, 200);
  ASSERT_EQ(Decide(RequestId(13), "deny", bob_).status, 200);
  ASSERT_EQ(Decide(RequestId(10), "deny", bob_, "no").status, 200);
  ASSERT_EQ(Decide(RequestId(12), "approve", bob_).status, 200);

  DecisionSource source = service_->approvals().MakeDecisionSource();
  auto gw1 = source("acme/dc1/gw-1", 0, 100);
  ASSERT_EQ(gw1.size(), 3u);
  EXPECT_EQ(gw1[0].request_id, RequestId(11));
  EXPECT_EQ(gw1[1].request_id, RequestId(10));
  EXPECT_EQ(gw1[1].state, "denied");
  EXPECT_EQ(gw1[1].comment, "no");
  EXPECT_EQ(gw1[2].request_id, RequestId(12));
  EXPECT_EQ(gw1[0].seq, 1);
  EXPECT_EQ(gw1[1].seq, 3);  // 2 went to the other gateway's request
  EXPECT_EQ(gw1[2].seq, 4);
  auto after_first = source("acme/dc1/gw-1", gw1[0].seq, 100);
  ASSERT_EQ(after_first.size(), 2u);
  EXPECT_EQ(after_first[0].request_id, RequestId(10));
  EXPECT_EQ(source("acme/dc1/gw-1", 0, 1).size(), 1u);
  EXPECT_TRUE(source("acme/dc1/gw-1", 4, 100).empty());
  auto gw2 = source("acme/dc1/gw-2", 0, 100);
  ASSERT_EQ(gw2.size(), 1u);
  EXPECT_EQ(gw2[0].request_id, RequestId(13));
  EXPECT_EQ(gw2[0].seq, 2);
  EXPECT_TRUE(source("acme/dc1/gw-unknown", 0, 100).empty());

  // The watch pages with the same cursor.
  auto page = AsGateway(gateway_, "GET", "/v1/gateway/watch?policy_version=0&cursor=3&wait_s=0");
  ASSERT_EQ(page.body.at("decisions").as_array().size(), 1u) << page.raw;
  EXPECT_EQ(page.body.at("cursor").as_int64(), 4);
}

TEST_F(ApprovalsTest, RequestsAndDecisionsSurviveARestart) {
  ASSERT_EQ(Ask(RequestId(20)).status, 201);
  ASSERT_EQ(Ask(RequestId(21)).status, 201);
  auto short_lived = Ask(RequestId(22), {{"timeout_s", 5}});
  ASSERT_EQ(short_lived.status, 201);
  ASSERT_EQ(Decide(RequestId(20), "approve", bob_, "ok").status, 200);

  service_->Stop();
  service_.reset();
  // The short request's deadline passes while the service is down.
  const std::int64_t expires_ms = short_lived.body.at("expires_ms").as_int64();
  std::this_thread::sleep_for(std::chrono::milliseconds(
      std::max<std::int64_t>(0, expires_ms - SystemClock::Instance().NowUnixMillis() + 200)));
  Start();

  auto first = Call("GET", "/v1/requests/" + RequestId(20), audrey_);
  EXPECT_EQ(first.body.at("state").as_string(), "approved");
  EXPECT_EQ(first.body.at("comment").as_string(), "ok");
  EXPECT_EQ(Call("GET", "/v1/requests/" + RequestId(21), audrey_).body.at("state").as_string(), "pending");
  // Overdue at start: expired at once, not after another timeout.
  EXPECT_TRUE(WaitFor(
      [&] { return Call("GET", "/v1/requests/" + RequestId(22), audrey_).body.at("state").as_string() == "expired"; },
      3s));
  // Idempotent across the restart too.
  EXPECT_EQ(Ask(RequestId(21)).status, 200);

  // Sequence numbers continue: 1 before the restart, 2 the expiry, 3 now.
  ASSERT_EQ(Decide(RequestId(21), "deny", bob_).status, 200);
  auto decisions = service_->approvals().MakeDecisionSource()("acme/dc1/gw-1", 0, 100);
  ASSERT_EQ(decisions.size(), 3u);
  EXPECT_EQ(decisions[0].request_id, RequestId(20));
  EXPECT_EQ(decisions[1].request_id, RequestId(22));
  EXPECT_EQ(decisions[1].state, "expired");
  EXPECT_EQ(decisions[2].request_id, RequestId(21));
  EXPECT_EQ(decisions[2].seq, 3);
}

TEST_F(ApprovalsTest, ApproversGetAnEmailWithEverythingToDecide) {
  const std::string id = RequestId(30);
  ASSERT_EQ(Ask(id).status, 201);
  auto messages = mail_->WaitForMessages(1, 15s);
  ASSERT_EQ(messages.size(), 1u) << mail_->log();
  const std::string& m = messages[0];
  EXPECT_NE(m.find("Subject: [Lifeline] Approval needed: alice -> SN41000 ssh"), std::string::npos) << m;
  EXPECT_NE(m.find("approvers@example.com"), std::string::npos) << m;
  EXPECT_NE(m.find("oncall@example.com"), std::string::npos) << m;
  EXPECT_NE(m.find("From: lifeline-policy@acme.example"), std::string::npos) << m;
  for (const std::string& expected :
       {std::string("Engineer:        alice"), std::string("Device:          SN41000"),
        std::string("Model:           VSP G900"), std::string("Activity:        remote_session"),
        std::string("Application:     ssh"), std::string("Reason:          replace disk 3"),
        std::string("Service request: SR-1234"), std::string("Gateway:         acme/dc1/gw-1"),
        std::string("Request id:      " + id), std::string("Expires:"),
        "lifeline policy requests approve " + id + " --url https://policy.acme.example:8443",
        "lifeline policy requests deny " + id + " --url https://policy.acme.example:8443"}) {
    EXPECT_NE(m.find(expected), std::string::npos) << expected << "\n" << m;
  }
  EXPECT_TRUE(WaitFor([&] { return service_->approvals().emails_sent() == 1; }, 2s));
  // A retry of the same request sends nothing more; a restart does not resend what was sent.
  ASSERT_EQ(Ask(id).status, 200);
  Restart();
  std::this_thread::sleep_for(1s);
  EXPECT_EQ(mail_->WaitForMessages(2, 500ms).size(), 1u);
}

// The mail thread on its own: with the SMTP server down the email waits, is retried while the
// request is pending, and is dropped once it is decided.
TEST(ApprovalsMail, RetriedWhileTheServerIsDownAndDroppedOnceDecided) {
  TempDir dir;
  MailSink mail(dir / "mail");
  const int port = mail.port();
  mail.Stop();
  ChangeFeed feed;
  auto audit = AuditLog::Open({.db_path = dir / "audit.db", .signing_key_path = dir / "audit-sign.key"});
  ASSERT_TRUE(audit);
  transport::SmtpSettings smtp{.url = "smtp://127.0.0.1:" + std::to_string(port),
                               .from = "lifeline-policy@acme.example",
                               .starttls = transport::SmtpSettings::Tls::kOff,
                               .timeout = 3s};
  auto approvals = Approvals::Open({.db_path = dir / "policy.db",
                                    .notify = {"approvers@example.com"},
                                    .mail_retry_min = 1s,
                                    .mail_retry_max = 2s},
                                   **audit, feed, std::make_unique<transport::SmtpMailer>(smtp));
  ASSERT_TRUE(approvals);
  NewApprovalRequest waits{.id = RequestId(40), .engineer = "alice", .device = "SN1", .activity = "remote_session",
                           .application = "https", .timeout_s = 600};
  NewApprovalRequest decided = waits;
  decided.id = RequestId(41);
  decided.device = "SN2";
  ASSERT_TRUE((*approvals)->Add("acme/dc1/gw-1", waits));
  ASSERT_TRUE((*approvals)->Add("acme/dc1/gw-1", decided));
  std::this_thread::sleep_for(1500ms);  // at least one failed attempt each
  auto outcome = (*approvals)->Decide(decided.id, false, "bob", "");
  ASSERT_TRUE(outcome);
  EXPECT_EQ(outcome->status, Approvals::DecideStatus::kDecided);
  EXPECT_EQ((*approvals)->emails_sent(), 0);

  mail.Restart({});
  auto messages = mail.WaitForMessages(1, 15s);
  ASSERT_EQ(messages.size(), 1u) << mail.log();
  EXPECT_NE(messages[0].find("alice -> SN1 https"), std::string::npos) << messages[0];
  std::this_thread::sleep_for(2500ms);  // the decided one's retry time passes: it is not sent
  EXPECT_EQ(mail.WaitForMessages(2, 200ms).size(), 1u);
  EXPECT_EQ((*approvals)->emails_sent(), 1);
  (*approvals)->Stop();
}

TEST(ApprovalEmail, NamesWhatIsAskedAndHowToAnswer) {
  ApprovalRequest r;
  r.id = RequestId(50);
  r.gateway = "acme/dc1/gw-1";
  r.engineer = "carol";
  r.device = "SN9";
  r.activity = "file_transfer";
  r.timeout_s = 900;
  r.received_ms = 1795000000000;
  r.expires_ms = r.received_ms + 900'000;
  const auto email = ComposeApprovalEmail(r, {"a@example.com"}, "");
  EXPECT_EQ(email.subject, "[Lifeline] Approval needed: carol -> SN9 file_transfer");
  EXPECT_EQ(email.to, std::vector<std::string>{"a@example.com"});
  EXPECT_NE(email.body.find("Expires:         2026-11-18T11:21:40.000Z"), std::string::npos) << email.body;
  EXPECT_NE(email.body.find("(15 min after it arrived"), std::string::npos) << email.body;
  EXPECT_NE(email.body.find("Reason:          (none given)"), std::string::npos) << email.body;
  EXPECT_NE(email.body.find("lifeline policy requests approve " + r.id + " --comment"), std::string::npos)
      << email.body;
  EXPECT_NE(email.body.find("and its --url"), std::string::npos) << email.body;
}

}  // namespace
}  // namespace lifeline::policy
