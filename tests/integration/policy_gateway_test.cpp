// Policies and approvals end to end with real processes on loopback (docs/policy.md, "Policies,
// approvals and the gateway"): `lifeline policy run` (the customer's policy manager, its approval
// emails to a real SMTP server), `lifeline home run`, `lifeline gateway run` enrolled with the home
// and pointed at the policy manager, Debian's sshd playing the device, and `lifeline connect` for the
// engineer. Approvers decide with `lifeline policy requests approve|deny`.
//
// The decision tests share one home, policy manager and gateway (one policy set with a device per
// case); each failure case (policy manager stopped, restarted, gateway restarted while it is down,
// device deployed while it is down) gets its own policy manager and gateway at a site of its own.
#include "support/gateway_harness.h"
#include "support/harness.h"
#include "support/policy_harness.h"

#include "crypto/pki.h"
#include "transport/http_client.h"

#include <boost/json.hpp>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <thread>

namespace lifeline::testing {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// What every case shares: a mail sink, a home, a device's sshd and web console.
struct Shared {
  TempDir dir;
  std::optional<MailSink> mail;
  std::optional<TestHome> home;
  std::optional<TestSshd> sshd;
  std::optional<TestHttpsServer> web;
  // The engineer as the home names them to gateways: its admin token's name.
  std::string engineer;
};
Shared* shared = nullptr;

// The home's admin API (POST/GET/DELETE /v1/sessions): quick probes without a `lifeline connect`.
struct HomeAnswer {
  int status = 0;
  json::object body;
};
HomeAnswer HomeCall(const std::string& method, const std::string& path, const json::object& body = {}) {
  transport::HttpClient client(transport::ClientTls{.ca_file = (shared->home->pki_dir() / "ca.crt").string()});
  auto response = client.Send({.method = method,
                               .url = shared->home->admin_url() + path,
                               .content_type = body.empty() ? "" : "application/json",
                               .body = body.empty() ? "" : json::serialize(body),
                               .headers = {{"Authorization", "Bearer " + shared->home->admin_token()}}});
  HomeAnswer answer;
  if (!response) {
    return answer;
  }
  answer.status = response->status;
  boost::system::error_code ec;
  auto parsed = json::parse(response->body, ec);
  if (!ec && parsed.is_object()) {
    answer.body = parsed.get_object();
  }
  return answer;
}

std::string Text(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->get_string()) : std::string();
}

HomeAnswer AskForSession(const std::string& device, const std::string& app = "ssh",
                         const std::string& service_request = "") {
  json::object ask{{"device", device}, {"app", app}, {"reason", "policy test probe"}};
  if (!service_request.empty()) {
    ask["service_request"] = service_request;
  }
  return HomeCall("POST", "/v1/sessions", ask);
}

// Asks for a session until the gateway opens one (201); ends it again. Returns how long it took,
// or nullopt when it did not open within `timeout`.
std::optional<std::chrono::milliseconds> TimeUntilOpen(const std::string& device, std::chrono::milliseconds timeout) {
  const auto start = Clock::now();
  while (Clock::now() - start < timeout) {
    auto answer = AskForSession(device);
    if (answer.status == 201) {
      const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
      HomeCall("DELETE", "/v1/sessions/" + Text(answer.body, "id"));
      return took;
    }
    if (answer.status == 202) {
      HomeCall("DELETE", "/v1/sessions/" + Text(answer.body, "id"));
    }
    std::this_thread::sleep_for(100ms);
  }
  return std::nullopt;
}

std::string Rule(int id, const std::string& serial, const std::string& action, int ask_timeout_s = 0) {
  return fmt::format(R"({{"id": {}, "activity": "remote_session", "scope": {{"kind": "device", "name": "{}"}},
                         "action": "{}"{}}})",
                     id, serial, action,
                     ask_timeout_s > 0 ? fmt::format(R"(, "ask_timeout_s": {})", ask_timeout_s) : std::string());
}

// A site: its own policy manager and its own gateway (acme/SITE/NAME), devices registered at the
// gateway, all reaching the shared sshd and web console.
struct Site {
  Site(const fs::path& dir, const std::string& gateway_name, const std::string& site_name)
      : site(site_name),
        policy(dir / "policy", *shared->home, shared->mail->port()),
        gateway(dir / "gateway", *shared->home, gateway_name, site_name) {
    gateway.UsePolicyManager(policy.url(), policy.ca_file());
  }

  void StartAll(const std::vector<std::string>& serials) {
    ASSERT_NO_FATAL_FAILURE(policy.Start());
    ASSERT_NO_FATAL_FAILURE(gateway.Enroll());
    ASSERT_NO_FATAL_FAILURE(gateway.Start());
    for (const auto& serial : serials) {
      ASSERT_NO_FATAL_FAILURE(Deploy(serial));
    }
  }

  void Deploy(const std::string& serial) {
    auto added = gateway.Run({"devices", "add", "--serial", serial, "--model", "VSP G900", "--address", "127.0.0.1",
                              "--app", fmt::format("ssh:{}", shared->sshd->port()), "--app",
                              fmt::format("https:{}", shared->web->port())});
    ASSERT_EQ(added.exit_code, 0) << added.output;
  }

  std::string Device(const std::string& serial) const { return fmt::format("acme/{}/{}", site, serial); }

  std::string site;
  TestPolicyManager policy;
  TestGateway gateway;
};

class PolicyGatewayTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    shared = new Shared;
    shared->mail.emplace(shared->dir / "mail");
    shared->home.emplace(shared->dir / "home", shared->mail->port());
    shared->home->Start();
    shared->engineer = "tests-home";
    shared->sshd.emplace(shared->dir / "sshd");
    shared->web.emplace(shared->dir / "web");
  }
  static void TearDownTestSuite() {
    delete main_site;
    main_site = nullptr;
    if (shared != nullptr) {
      shared->home->Stop();
    }
    delete shared;
    shared = nullptr;
  }

  // The decision tests' site: one policy set with a device per case.
  static Site& MainSite() {
    if (main_site == nullptr) {
      main_site = new Site(shared->dir / "main", "gw-main", "lab");
      main_site->StartAll({"array-allow", "array-deny", "array-ask", "array-timeout", "array-new"});
      main_site->policy.AddUser("anna", "approver", "anna's long approver password");
      main_site->policy.CreateToken("approver-bot", "approver");
      main_site->policy.SetPolicy(PolicyJson(Rule(1, "array-allow", "always_allow") + "," +
                                             Rule(2, "array-deny", "never_allow") + "," +
                                             Rule(3, "array-ask", "ask_for_approval", 600) + "," +
                                             Rule(4, "array-timeout", "ask_for_approval", 5)));
      // Synced: the Always device opens.
      EXPECT_TRUE(TimeUntilOpen(main_site->Device("array-allow"), 20s)) << main_site->gateway.LogText();
    }
    return *main_site;
  }

  fs::path Dir(const std::string& name) const { return shared->dir / name; }

  static Site* main_site;
};
Site* PolicyGatewayTest::main_site = nullptr;

// ---- Decisions ---------------------------------------------------------------------------------

TEST_F(PolicyGatewayTest, AlwaysAllowOpensTheSessionToTheDevice) {
  Site& s = MainSite();
  TestSession ssh(Dir("allow"), *shared->home, s.Device("array-allow"), "ssh");
  ASSERT_TRUE(ssh.WaitOpen()) << ssh.Output() << s.gateway.LogText();
  auto result = shared->sshd->Ssh(ssh.local_port(), "echo allowed-by-policy");
  EXPECT_NE(result.output.find("allowed-by-policy"), std::string::npos) << result.output;
  EXPECT_EQ(ssh.Terminate(), 0) << ssh.Output();
  // The decision reaches the policy manager's audit log, naming the rule.
  std::string audit;
  EXPECT_TRUE(Eventually(
      [&] {
        audit.clear();
        for (const auto& r : s.policy.AuditRecords()) {
          audit += json::serialize(r) + "\n";
        }
        return audit.find(ssh.id()) != std::string::npos && audit.find("rule 1") != std::string::npos;
      },
      15s))
      << audit;
}

TEST_F(PolicyGatewayTest, NeverAllowRefusesWithTheRulesReason) {
  Site& s = MainSite();
  TestSession ssh(Dir("deny"), *shared->home, s.Device("array-deny"), "ssh");
  EXPECT_FALSE(ssh.WaitOpen()) << ssh.Output();
  EXPECT_EQ(ssh.Wait(10s).value_or(-1), 1) << ssh.Output();
  EXPECT_NE(ssh.Output().find("Never Allow"), std::string::npos) << ssh.Output();
  EXPECT_NE(ssh.Output().find("rule 2"), std::string::npos) << ssh.Output();
}

TEST_F(PolicyGatewayTest, AskThenApproveOpensTheSessionAndTheApproverGetsAnEmail) {
  Site& s = MainSite();
  TestSession ssh(Dir("approve"), *shared->home, s.Device("array-ask"), "ssh", "replace disk 3",
                  {"--service-request", "SR-4711"});
  ASSERT_TRUE(ssh.WaitPending()) << ssh.Output() << s.gateway.LogText();
  EXPECT_NE(ssh.Output().find("expires at"), std::string::npos) << ssh.Output();

  auto request = s.policy.WaitForRequest(ssh.id());
  ASSERT_TRUE(request) << s.gateway.LogText() << s.policy.LogText();
  EXPECT_EQ(Text(*request, "state"), "pending");
  EXPECT_EQ(Text(*request, "engineer"), shared->engineer);
  EXPECT_EQ(Text(*request, "device"), "array-ask");
  EXPECT_EQ(Text(*request, "application"), "ssh");
  EXPECT_EQ(Text(*request, "service_request"), "SR-4711");
  EXPECT_EQ(Text(*request, "gateway"), "acme/lab/gw-main");

  // The approvers' email, at the real SMTP server, names who wants what and why.
  std::string email;
  ASSERT_TRUE(Eventually(
      [&] {
        for (const auto& m : shared->mail->Messages()) {
          if (m.find(ssh.id()) != std::string::npos) {
            email = m;
            return true;
          }
        }
        return false;
      },
      15s))
      << s.policy.LogText();
  EXPECT_NE(email.find("Subject: [Lifeline] Approval needed: " + shared->engineer + " -> array-ask ssh"),
            std::string::npos)
      << email;
  EXPECT_NE(email.find("approvers@example.com"), std::string::npos) << email;
  for (const std::string& part : {std::string("VSP G900"), std::string("replace disk 3"), std::string("SR-4711"),
                                  std::string("acme/lab/gw-main"), std::string("requests approve")}) {
    EXPECT_NE(email.find(part), std::string::npos) << part << " missing in\n" << email;
  }

  // Anna (a user with a password, logged in) approves with the CLI; the session opens.
  s.policy.Login("anna", "anna's long approver password");
  auto approved = s.policy.Approve(ssh.id(), "anna", "go ahead");
  ASSERT_EQ(approved.exit_code, 0) << approved.output;
  ASSERT_TRUE(ssh.WaitOpen()) << ssh.Output() << s.gateway.LogText();
  auto result = shared->sshd->Ssh(ssh.local_port(), "echo approved-by-anna");
  EXPECT_NE(result.output.find("approved-by-anna"), std::string::npos) << result.output;
  EXPECT_EQ(ssh.Terminate(), 0) << ssh.Output();
  auto decided = s.policy.WaitForRequest(ssh.id());
  ASSERT_TRUE(decided);
  EXPECT_EQ(Text(*decided, "state"), "approved");
  EXPECT_EQ(Text(*decided, "decided_by"), "anna");
}

TEST_F(PolicyGatewayTest, AskThenDenyEndsTheSession) {
  Site& s = MainSite();
  TestSession ssh(Dir("ask-deny"), *shared->home, s.Device("array-ask"), "ssh", "look at the logs",
                  {"--service-request", "SR-4712"});
  ASSERT_TRUE(ssh.WaitPending()) << ssh.Output() << s.gateway.LogText();
  ASSERT_TRUE(s.policy.WaitForRequest(ssh.id())) << s.gateway.LogText();
  auto denied = s.policy.Deny(ssh.id(), "approver-bot", "not during month-end close");
  ASSERT_EQ(denied.exit_code, 0) << denied.output;
  ASSERT_EQ(ssh.Wait(10s).value_or(-1), 1) << ssh.Output();
  EXPECT_NE(ssh.Output().find("denied by approver-bot"), std::string::npos) << ssh.Output();
  EXPECT_NE(ssh.Output().find("not during month-end close"), std::string::npos) << ssh.Output();
  EXPECT_EQ(ssh.Output().find("listening on"), std::string::npos) << ssh.Output();
}

TEST_F(PolicyGatewayTest, AskTimesOutAndDenies) {
  Site& s = MainSite();
  const auto start = Clock::now();
  TestSession ssh(Dir("ask-timeout"), *shared->home, s.Device("array-timeout"), "ssh");
  ASSERT_TRUE(ssh.WaitPending()) << ssh.Output() << s.gateway.LogText();
  // ask_timeout_s 5: nobody answers, so the session ends denied.
  ASSERT_EQ(ssh.Wait(20s).value_or(-1), 1) << ssh.Output();
  const auto took = Clock::now() - start;
  EXPECT_GE(took, 4s);
  EXPECT_NE(ssh.Output().find("approval timed out"), std::string::npos) << ssh.Output();
  std::optional<json::object> request;
  EXPECT_TRUE(Eventually(
      [&] {
        request = s.policy.WaitForRequest(ssh.id(), 1s);
        return request && Text(*request, "state") == "expired";
      },
      10s))
      << (request ? json::serialize(*request) : std::string("no request"));
}

TEST_F(PolicyGatewayTest, NobodyApprovesTheirOwnRequestAndAuditorsCannotApprove) {
  Site& s = MainSite();
  // An approver whose name is the engineer's (the home's admin token name).
  s.policy.CreateToken(shared->engineer, "approver");
  TestSession ssh(Dir("own"), *shared->home, s.Device("array-ask"), "ssh");
  ASSERT_TRUE(ssh.WaitPending()) << ssh.Output() << s.gateway.LogText();
  ASSERT_TRUE(s.policy.WaitForRequest(ssh.id())) << s.gateway.LogText();

  auto own = s.policy.Approve(ssh.id(), shared->engineer);
  EXPECT_NE(own.exit_code, 0) << own.output;
  EXPECT_NE(own.output.find("your own request"), std::string::npos) << own.output;
  auto own_api = s.policy.Api("POST", "/v1/requests/" + ssh.id() + "/approve", s.policy.Token(shared->engineer), "{}");
  EXPECT_EQ(own_api.status, 403) << own_api.raw;
  EXPECT_NE(own_api.raw.find("own_request"), std::string::npos) << own_api.raw;

  auto auditor = s.policy.Approve(ssh.id(), "policy-auditor");
  EXPECT_NE(auditor.exit_code, 0) << auditor.output;
  auto auditor_api =
      s.policy.Api("POST", "/v1/requests/" + ssh.id() + "/approve", s.policy.Token("policy-auditor"), "{}");
  EXPECT_EQ(auditor_api.status, 403) << auditor_api.raw;

  auto request = s.policy.WaitForRequest(ssh.id());
  ASSERT_TRUE(request);
  EXPECT_EQ(Text(*request, "state"), "pending");
  EXPECT_TRUE(ssh.Running()) << ssh.Output();

  // Ctrl-C while waiting ends the session at the gateway.
  EXPECT_EQ(ssh.Terminate(), 1) << ssh.Output();
  EXPECT_NE(ssh.Output().find("ended by you while it waited for approval"), std::string::npos) << ssh.Output();
  auto listed = s.gateway.Run({"sessions", "list", "--all", "--json"});
  ASSERT_EQ(listed.exit_code, 0) << listed.output;
  const auto all = json::parse(listed.output.substr(listed.output.find('{')));
  bool found = false;
  for (const auto& record : all.at("sessions").as_array()) {
    if (record.at("id").as_string() == ssh.id()) {
      found = true;
      EXPECT_NE(record.at("outcome").as_string(), "pending approval") << json::serialize(record);
      EXPECT_NE(record.at("outcome").as_string(), "open") << json::serialize(record);
    }
  }
  EXPECT_TRUE(found) << listed.output;
}

TEST_F(PolicyGatewayTest, GatewayApiAnswersOnlyGatewayCertificatesOfTheHomesCa) {
  Site& s = MainSite();
  const std::string watch = s.policy.url() + "/v1/gateway/watch?policy_version=0&cursor=0&wait_s=0";
  auto get = [&](transport::ClientTls tls, const std::string& token = "") {
    transport::HttpClient client(tls);
    transport::ClientRequest request{.method = "GET", .url = watch};
    if (!token.empty()) {
      request.headers.emplace_back("Authorization", "Bearer " + token);
    }
    auto response = client.Send(request);
    return response ? std::pair<int, std::string>{response->status, response->body}
                    : std::pair<int, std::string>{0, response.error().message()};
  };
  const std::string ca = s.policy.ca_file().string();
  const fs::path gateway_pki = s.gateway.dir() / "data" / "pki";

  // The enrolled gateway's own certificate: the positive control.
  auto real = get({ca, (gateway_pki / "gateway.crt").string(), (gateway_pki / "gateway.key").string()});
  EXPECT_EQ(real.first, 200) << real.second;
  EXPECT_NE(real.second.find("policy_version"), std::string::npos) << real.second;

  // No certificate; an admin's bearer token without one.
  auto none = get({ca});
  EXPECT_EQ(none.first, 401) << none.second;
  EXPECT_EQ(none.second.find("policy_version"), std::string::npos) << none.second;
  auto bearer = get({ca}, s.policy.Token("policy-admin"));
  EXPECT_TRUE(bearer.first == 401 || bearer.first == 403) << bearer.first << " " << bearer.second;
  EXPECT_EQ(bearer.second.find("policy_version"), std::string::npos) << bearer.second;

  // A gateway certificate for the same name, from a CA of its own making: TLS refuses it, or 401/403.
  auto rogue = RunLifeline({"pki", "init", "--dir", Dir("rogue").string()});
  ASSERT_EQ(rogue.exit_code, 0) << rogue.output;
  const std::string key = crypto::GeneratePrivateKeyPem();
  const protocol::DeviceIdentity identity{"acme", "lab", "gw-main", ""};
  auto csr = crypto::MakeCsr(key, identity, crypto::PeerKind::kGateway);
  ASSERT_TRUE(csr);
  auto forged = crypto::IssueGatewayCertificate(ReadFile(Dir("rogue") / "ca.crt"), ReadFile(Dir("rogue") / "ca.key"),
                                                *csr, identity, {"127.0.0.1"}, 1);
  ASSERT_TRUE(forged);
  WriteFile(Dir("rogue") / "gw.crt", forged->pem);
  WriteFile(Dir("rogue") / "gw.key", key);
  auto self_made = get({ca, (Dir("rogue") / "gw.crt").string(), (Dir("rogue") / "gw.key").string()});
  EXPECT_TRUE(self_made.first == 0 || self_made.first == 401 || self_made.first == 403)
      << self_made.first << " " << self_made.second;
  EXPECT_EQ(self_made.second.find("policy_version"), std::string::npos) << self_made.second;

  // A device's certificate from the home's own CA: the right CA, but not a gateway.
  const std::string device_key = crypto::GeneratePrivateKeyPem();
  const protocol::DeviceIdentity device{"acme", "lab", "array-allow", "VSP G900"};
  auto device_csr = crypto::MakeCsr(device_key, device);
  ASSERT_TRUE(device_csr);
  auto device_cert = crypto::IssueDeviceCertificate(ReadFile(shared->home->pki_dir() / "ca.crt"),
                                                    ReadFile(shared->home->pki_dir() / "ca.key"), *device_csr, device, 1);
  ASSERT_TRUE(device_cert);
  WriteFile(Dir("rogue") / "device.crt", device_cert->pem);
  WriteFile(Dir("rogue") / "device.key", device_key);
  auto as_device = get({ca, (Dir("rogue") / "device.crt").string(), (Dir("rogue") / "device.key").string()});
  EXPECT_EQ(as_device.first, 403) << as_device.second;
  EXPECT_EQ(as_device.second.find("policy_version"), std::string::npos) << as_device.second;

  // And the gateway's certificate is no key to the users' routes.
  transport::HttpClient client(
      transport::ClientTls{ca, (gateway_pki / "gateway.crt").string(), (gateway_pki / "gateway.key").string()});
  auto policies = client.Send({.method = "GET", .url = s.policy.url() + "/v1/policies"});
  ASSERT_TRUE(policies);
  EXPECT_EQ(policies->status, 401) << policies->body;
}

// The policy manager wakes the gateway's watch: a new version decides within 10 s (ESRS: 2 minutes).
TEST_F(PolicyGatewayTest, NewPolicyVersionReachesTheGatewayWithinTenSeconds) {
  Site& s = MainSite();
  auto before = AskForSession(s.Device("array-new"));
  EXPECT_EQ(before.status, 403) << json::serialize(before.body);  // no policy for it yet
  EXPECT_NE(Text(before.body, "message").find("no policy"), std::string::npos) << json::serialize(before.body);
  auto current = s.policy.Api("GET", "/v1/policies", s.policy.Token("policy-auditor"));
  ASSERT_EQ(current.status, 200);
  json::object set = current.body.at("policy").as_object();
  set["rules"].as_array().push_back(json::parse(Rule(50, "array-new", "always_allow")));
  auto put = s.policy.Api("PUT", "/v1/policies", s.policy.Token("policy-admin"), json::serialize(set));
  ASSERT_EQ(put.status, 200) << put.raw;
  auto took = TimeUntilOpen(s.Device("array-new"), 15s);
  ASSERT_TRUE(took) << s.gateway.LogText();
  std::cout << "new policy version to the gateway's decision: " << took->count() << " ms\n";
  EXPECT_LT(*took, 10s);
}

// An approval reaches the gateway through its watch within a second.
TEST_F(PolicyGatewayTest, GatewayLearnsAnApprovalWithinASecond) {
  Site& s = MainSite();
  auto asked = AskForSession(s.Device("array-ask"), "ssh", "SR-4713");
  ASSERT_EQ(asked.status, 202) << json::serialize(asked.body);
  EXPECT_EQ(Text(asked.body, "outcome"), "pending approval");
  EXPECT_NE(asked.body.if_contains("approval_expires_ms"), nullptr) << json::serialize(asked.body);
  const std::string id = Text(asked.body, "id");
  auto pending = HomeCall("GET", "/v1/sessions/" + id);
  EXPECT_EQ(pending.status, 200);
  EXPECT_EQ(Text(pending.body, "outcome"), "pending approval") << json::serialize(pending.body);
  ASSERT_TRUE(s.policy.WaitForRequest(id)) << s.gateway.LogText();

  auto approved = s.policy.Api("POST", "/v1/requests/" + id + "/approve", s.policy.Token("approver-bot"),
                               R"({"comment": "timed"})");
  ASSERT_EQ(approved.status, 200) << approved.raw;
  const auto decided = Clock::now();
  std::string outcome;
  while (Clock::now() - decided < 5s) {
    outcome = Text(HomeCall("GET", "/v1/sessions/" + id).body, "outcome");
    if (outcome == "open") {
      break;
    }
    std::this_thread::sleep_for(20ms);
  }
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - decided);
  ASSERT_EQ(outcome, "open") << s.gateway.LogText();
  std::cout << "approval to the gateway's open session: " << took.count() << " ms\n";
  EXPECT_LT(took, 1s);
  EXPECT_EQ(HomeCall("DELETE", "/v1/sessions/" + id).status, 200);
}

// ---- The policy manager fails ------------------------------------------------------------------

// Stopped: the cached Always and Never still decide; Ask cannot be answered and times out.
TEST_F(PolicyGatewayTest, PolicyManagerStoppedCachedRulesStillApplyAndAskTimesOut) {
  Site s(Dir("stopped"), "gw-stopped", "lab-stopped");
  ASSERT_NO_FATAL_FAILURE(s.StartAll({"a", "b", "c"}));
  s.policy.SetPolicy(PolicyJson(Rule(1, "a", "always_allow") + "," + Rule(2, "b", "never_allow") + "," +
                                Rule(3, "c", "ask_for_approval", 5)));
  ASSERT_TRUE(TimeUntilOpen(s.Device("a"), 20s)) << s.gateway.LogText();
  s.policy.Stop();

  TestSession allowed(Dir("stopped-a"), *shared->home, s.Device("a"), "ssh");
  ASSERT_TRUE(allowed.WaitOpen()) << allowed.Output() << s.gateway.LogText();
  auto result = shared->sshd->Ssh(allowed.local_port(), "echo cached-always");
  EXPECT_NE(result.output.find("cached-always"), std::string::npos) << result.output;
  EXPECT_EQ(allowed.Terminate(), 0);

  TestSession denied(Dir("stopped-b"), *shared->home, s.Device("b"), "ssh");
  EXPECT_FALSE(denied.WaitOpen()) << denied.Output();
  EXPECT_NE(denied.Output().find("Never Allow"), std::string::npos) << denied.Output();

  TestSession asked(Dir("stopped-c"), *shared->home, s.Device("c"), "ssh");
  ASSERT_TRUE(asked.WaitPending()) << asked.Output() << s.gateway.LogText();
  ASSERT_EQ(asked.Wait(20s).value_or(-1), 1) << asked.Output();
  EXPECT_NE(asked.Output().find("approval timed out"), std::string::npos) << asked.Output();

  // The operator's view: the cached version, the policy manager unreachable, the audit records waiting.
  auto status = RunLifeline({"gateway", "policy", "status", "--json", "--config", s.gateway.config().string()});
  ASSERT_EQ(status.exit_code, 0) << status.output;
  boost::system::error_code ec;
  auto state = boost::json::parse(status.output.substr(status.output.find('{')), ec);
  ASSERT_FALSE(ec) << status.output;
  EXPECT_EQ(state.at("mode").as_string(), "managed");
  EXPECT_GE(state.at("policy_version").to_number<std::int64_t>(), 1);
  EXPECT_FALSE(state.at("reachable").as_bool()) << status.output;
  EXPECT_FALSE(state.at("last_error").as_string().empty()) << status.output;
  EXPECT_GT(state.at("outbox").to_number<std::int64_t>(), 0) << status.output;  // the decisions above, at least
  auto text = RunLifeline({"gateway", "policy", "status", "--config", s.gateway.config().string()});
  EXPECT_NE(text.output.find("reachable: NO"), std::string::npos) << text.output;
}

// Restarted: the gateway resyncs by itself, learns a new version within 10 s, and approvals work again.
TEST_F(PolicyGatewayTest, PolicyManagerRestartedGatewayResyncsAndApprovalsWorkAgain) {
  Site s(Dir("restarted"), "gw-restarted", "lab-restarted");
  ASSERT_NO_FATAL_FAILURE(s.StartAll({"a", "b"}));
  s.policy.CreateToken("approver-bot", "approver");
  s.policy.SetPolicy(PolicyJson(Rule(1, "a", "always_allow") + "," + Rule(2, "b", "never_allow")));
  ASSERT_TRUE(TimeUntilOpen(s.Device("a"), 20s)) << s.gateway.LogText();
  s.policy.Stop();
  std::this_thread::sleep_for(2s);  // the gateway's watch fails at least once
  ASSERT_NO_FATAL_FAILURE(s.policy.Start());

  s.policy.SetPolicy(PolicyJson(Rule(1, "a", "always_allow") + "," + Rule(2, "b", "ask_for_approval", 600)));
  const auto changed = Clock::now();
  std::optional<HomeAnswer> pending;
  while (Clock::now() - changed < 15s) {
    auto answer = AskForSession(s.Device("b"));
    if (answer.status == 202) {
      pending = answer;
      break;
    }
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(pending) << s.gateway.LogText();
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - changed);
  std::cout << "after the restart, new policy version to the gateway's decision: " << took.count() << " ms\n";
  EXPECT_LT(took, 10s);

  const std::string id = Text(pending->body, "id");
  ASSERT_TRUE(s.policy.WaitForRequest(id)) << s.gateway.LogText();
  auto approved = s.policy.Approve(id, "approver-bot");
  ASSERT_EQ(approved.exit_code, 0) << approved.output;
  EXPECT_TRUE(Eventually([&] { return Text(HomeCall("GET", "/v1/sessions/" + id).body, "outcome") == "open"; }, 5s))
      << s.gateway.LogText();
  HomeCall("DELETE", "/v1/sessions/" + id);
}

// The gateway restarts while the policy manager is down: it decides from its durable cache, and the
// audit records of that time reach the policy manager when it returns, with their original times.
TEST_F(PolicyGatewayTest, GatewayRestartedWhilePolicyManagerDownKeepsDecidingAndLosesNoAuditRecord) {
  Site s(Dir("gw-restart"), "gw-restart", "lab-gw-restart");
  ASSERT_NO_FATAL_FAILURE(s.StartAll({"a", "b"}));
  s.policy.SetPolicy(PolicyJson(Rule(1, "a", "always_allow") + "," + Rule(2, "b", "never_allow")));
  ASSERT_TRUE(TimeUntilOpen(s.Device("a"), 20s)) << s.gateway.LogText();
  s.policy.Stop();
  const std::int64_t down_ms = NowMs();

  // Sessions before and after the gateway's restart, all while the policy manager is down.
  std::vector<std::string> sessions;
  TestSession first(Dir("gw-restart-1"), *shared->home, s.Device("a"), "ssh");
  ASSERT_TRUE(first.WaitOpen()) << first.Output() << s.gateway.LogText();
  EXPECT_NE(shared->sshd->Ssh(first.local_port(), "echo one").output.find("one"), std::string::npos);
  EXPECT_EQ(first.Terminate(), 0);
  sessions.push_back(first.id());
  auto refused = AskForSession(s.Device("b"));
  EXPECT_EQ(refused.status, 403) << json::serialize(refused.body);

  s.gateway.Stop();
  ASSERT_NO_FATAL_FAILURE(s.gateway.Start());
  TestSession second(Dir("gw-restart-2"), *shared->home, s.Device("a"), "ssh");
  ASSERT_TRUE(second.WaitOpen()) << second.Output() << s.gateway.LogText();
  EXPECT_NE(shared->sshd->Ssh(second.local_port(), "echo two").output.find("two"), std::string::npos);
  EXPECT_EQ(second.Terminate(), 0);
  sessions.push_back(second.id());
  auto refused_again = AskForSession(s.Device("b"));
  EXPECT_EQ(refused_again.status, 403) << json::serialize(refused_again.body);
  EXPECT_NE(Text(refused_again.body, "message").find("Never Allow"), std::string::npos)
      << json::serialize(refused_again.body);
  const std::int64_t back_ms = NowMs();

  ASSERT_NO_FATAL_FAILURE(s.policy.Start());
  // Each session's records (decision, start, end) arrive, keeping the times they happened.
  const std::string source = "acme/lab-gw-restart/gw-restart";
  std::map<std::string, int> per_session;
  std::vector<json::object> records;
  const bool delivered = Eventually(
      [&] {
        records = s.policy.AuditRecords();
        per_session.clear();
        for (const auto& r : records) {
          const std::string line = json::serialize(r);
          for (const auto& id : sessions) {
            if (line.find(id) != std::string::npos) {
              ++per_session[id];
            }
          }
        }
        return per_session.size() == sessions.size() &&
               std::all_of(per_session.begin(), per_session.end(), [](const auto& p) { return p.second >= 3; });
      },
      30s);
  std::string dump;
  for (const auto& r : records) {
    dump += json::serialize(r) + "\n";
  }
  ASSERT_TRUE(delivered) << dump << s.gateway.LogText();
  int while_down = 0;
  std::set<std::string> record_ids;
  for (const auto& r : records) {
    if (Text(r, "source") != source) {
      continue;
    }
    EXPECT_TRUE(record_ids.insert(Text(r, "record_id")).second) << "duplicate " << json::serialize(r);
    const auto time_ms = r.at("time_ms").to_number<std::int64_t>();
    const auto received_ms = r.at("received_ms").to_number<std::int64_t>();
    if (time_ms >= down_ms && time_ms <= back_ms) {
      ++while_down;
      EXPECT_GT(received_ms, back_ms) << json::serialize(r);
    }
  }
  // Two sessions with decision, start and end each, and the two refusals.
  EXPECT_GE(while_down, 8) << dump;
  // The delivered log still verifies.
  WriteFile(Dir("gw-restart") / "audit.jsonl", s.policy.Api("GET", "/v1/audit?format=jsonl",
                                                            s.policy.Token("policy-auditor")).raw);
  auto verified = RunLifeline({"audit", "verify", "--export", (Dir("gw-restart") / "audit.jsonl").string(),
                               "--public-key", (s.policy.data_dir() / "audit-sign.key.pub").string()});
  EXPECT_EQ(verified.exit_code, 0) << verified.output;
}

// A device deployed while the policy manager is unreachable is denied until it answers again.
TEST_F(PolicyGatewayTest, DeviceDeployedWhilePolicyManagerDownIsDeniedUntilItAnswers) {
  Site s(Dir("deployed"), "gw-deployed", "lab-deployed");
  ASSERT_NO_FATAL_FAILURE(s.StartAll({"a"}));
  const std::string site_default =
      R"({"id": 9, "activity": "remote_session", "scope": {"kind": "site"}, "action": "always_allow"})";
  s.policy.SetPolicy(PolicyJson(site_default));
  ASSERT_TRUE(TimeUntilOpen(s.Device("a"), 20s)) << s.gateway.LogText();
  s.policy.Stop();
  ASSERT_NO_FATAL_FAILURE(s.Deploy("late"));

  TestSession early(Dir("deployed-early"), *shared->home, s.Device("late"), "ssh");
  EXPECT_FALSE(early.WaitOpen()) << early.Output();
  EXPECT_EQ(early.Wait(10s).value_or(-1), 1) << early.Output();
  EXPECT_NE(early.Output().find("late"), std::string::npos) << early.Output();
  // The device deployed before the outage is still allowed by the cached site default.
  EXPECT_TRUE(TimeUntilOpen(s.Device("a"), 5s)) << s.gateway.LogText();

  ASSERT_NO_FATAL_FAILURE(s.policy.Start());
  auto took = TimeUntilOpen(s.Device("late"), 30s);
  ASSERT_TRUE(took) << s.gateway.LogText();
  std::cout << "policy manager back to the new device's first session: " << took->count() << " ms\n";
  TestSession later(Dir("deployed-later"), *shared->home, s.Device("late"), "ssh");
  ASSERT_TRUE(later.WaitOpen()) << later.Output();
  EXPECT_NE(shared->sshd->Ssh(later.local_port(), "echo late-device").output.find("late-device"), std::string::npos);
}

}  // namespace
}  // namespace lifeline::testing
