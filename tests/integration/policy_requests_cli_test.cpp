// `lifeline policy requests list|approve|deny` against a real `lifeline policy run`: a gateway (a
// client certificate from the gateways' CA) asks for approval over HTTPS, and approvers and an
// auditor answer with the CLI and their own API tokens, so the service's role checks and the
// own-request rule reach the command line as clear messages and exit codes.
#include "crypto/keys.h"
#include "crypto/pki.h"
#include "support/gateway_harness.h"
#include "support/harness.h"
#include "transport/http_client.h"

#include <boost/json.hpp>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <regex>

namespace lifeline::testing {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

class PolicyRequestsCli : public ::testing::Test {
 protected:
  void SetUp() override {
    auto pki = RunLifeline({"pki", "init", "--dir", (dir_ / "pki").string(), "--name", "127.0.0.1"});
    ASSERT_EQ(pki.exit_code, 0) << pki.output;
    ca_ = (dir_ / "pki" / "ca.crt").string();
    IssueGatewayCertificate();
    port_ = FreePort();
    WriteFile(dir_ / "policy.toml", fmt::format(R"([policy]
data_dir = "{0}/data"
[listen]
https = "127.0.0.1:{1}"
[tls]
cert_file = "{0}/pki/home.crt"
key_file = "{0}/pki/home.key"
client_ca_file = "{0}/pki/ca.crt"
)",
                                                dir_.path().string(), port_));
    for (const auto& [name, role] : std::vector<std::pair<std::string, std::string>>{
             {"bob", "approver"}, {"alice", "approver"}, {"audrey", "auditor"}}) {
      auto created = RunLifeline({"policy", "tokens", "create", name, "--role", role, "--config",
                                  (dir_ / "policy.toml").string()});
      ASSERT_EQ(created.exit_code, 0) << created.output;
      std::smatch token;
      ASSERT_TRUE(std::regex_search(created.output, token, std::regex("llpol[a-z]*_[A-Za-z0-9_-]+")))
          << created.output;
      WriteFile(dir_ / (name + ".token"), token.str() + "\n");
    }
    auto process = cli::Subprocess::Spawn(
        {LIFELINE_BINARY, "policy", "run", "--config", (dir_ / "policy.toml").string()}, dir_ / "policy.log");
    ASSERT_TRUE(process);
    service_.emplace(std::move(*process));
    ASSERT_TRUE(Eventually([&] { return ReadFile(dir_ / "policy.log").find("listening on https://") != std::string::npos; },
                           20s))
        << ReadFile(dir_ / "policy.log");
  }
  void TearDown() override {
    if (service_) {
      service_->Terminate();
    }
  }

  void IssueGatewayCertificate() {
    const protocol::DeviceIdentity identity{"acme", "dc1", "gw-1", ""};
    const std::string key = crypto::GeneratePrivateKeyPem();
    auto csr = crypto::MakeCsr(key, identity, crypto::PeerKind::kGateway);
    ASSERT_TRUE(csr);
    auto issued = crypto::IssueGatewayCertificate(ReadFile(ca_), ReadFile(dir_ / "pki" / "ca.key"), *csr, identity,
                                                  {"127.0.0.1"}, 2);
    ASSERT_TRUE(issued);
    WriteFile(dir_ / "gw.crt", issued->pem);
    ASSERT_TRUE(crypto::WritePrivateKeyPem(dir_ / "gw.key", key));
  }

  /// What the gateway does when a rule says Ask for Approval.
  void Ask(const std::string& id, const std::string& engineer, const std::string& device) {
    transport::HttpClient client(
        transport::ClientTls{ca_, (dir_ / "gw.crt").string(), (dir_ / "gw.key").string()});
    auto response = client.Send(
        {.method = "POST",
         .url = fmt::format("https://127.0.0.1:{}/v1/gateway/requests", port_),
         .content_type = "application/json",
         .body = json::serialize(json::object{{"request_id", id},
                                              {"engineer", engineer},
                                              {"device", device},
                                              {"model", "VSP G900"},
                                              {"activity", "remote_session"},
                                              {"application", "ssh"},
                                              {"reason", "replace disk 3"},
                                              {"service_request", "SR-77"},
                                              {"rule_id", 7},
                                              {"timeout_s", 900},
                                              {"requested_ms", 1795000000000}})});
    ASSERT_TRUE(response) << response.error().message();
    ASSERT_EQ(response->status, 201) << response->body;
  }

  CommandResult Requests(std::vector<std::string> args, const std::string& token) {
    args.insert(args.begin(), {"policy", "requests"});
    args.insert(args.end(), {"--url", fmt::format("https://127.0.0.1:{}", port_), "--ca-file", ca_, "--token-file",
                             (dir_ / (token + ".token")).string()});
    return RunLifeline(args);
  }

  TempDir dir_;
  std::string ca_;
  int port_ = 0;
  std::optional<cli::Subprocess> service_;
};

TEST_F(PolicyRequestsCli, ListApproveDenyWithClearRefusals) {
  const std::string first = std::string(31, 'a') + "1";
  const std::string second = std::string(31, 'b') + "2";
  auto empty = Requests({"list"}, "audrey");
  EXPECT_EQ(empty.exit_code, 0) << empty.output;
  EXPECT_NE(empty.output.find("no pending approval requests"), std::string::npos) << empty.output;

  Ask(first, "alice", "SN41000");
  Ask(second, "carol", "SN41001");
  auto listed = Requests({"list"}, "audrey");
  ASSERT_EQ(listed.exit_code, 0) << listed.output;
  for (const std::string& expected : {first, second, std::string("alice"), std::string("SN41000"),
                                      std::string("ssh"), std::string("replace disk 3 [SR-77]")}) {
    EXPECT_NE(listed.output.find(expected), std::string::npos) << expected << "\n" << listed.output;
  }

  // An auditor may list but not decide; nobody decides their own request.
  auto auditor = Requests({"approve", first}, "audrey");
  EXPECT_EQ(auditor.exit_code, 1);
  EXPECT_NE(auditor.output.find("may not decide requests (needs approver or admin)"), std::string::npos)
      << auditor.output;
  auto own = Requests({"approve", first, "--comment", "mine"}, "alice");
  EXPECT_EQ(own.exit_code, 1);
  EXPECT_NE(own.output.find("this is your own request"), std::string::npos) << own.output;

  auto approved = Requests({"approve", first, "--comment", "go ahead"}, "bob");
  EXPECT_EQ(approved.exit_code, 0) << approved.output;
  EXPECT_NE(approved.output.find("approved request " + first + ": alice -> SN41000 ssh"), std::string::npos)
      << approved.output;
  auto again = Requests({"deny", first}, "bob");
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.output.find("is not pending: it was approved already"), std::string::npos) << again.output;
  auto unknown = Requests({"deny", std::string(32, 'c')}, "bob");
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.output.find("no request " + std::string(32, 'c')), std::string::npos) << unknown.output;

  auto denied = Requests({"deny", second, "--comment", "not today"}, "alice");
  EXPECT_EQ(denied.exit_code, 0) << denied.output;
  EXPECT_NE(denied.output.find("denied request " + second), std::string::npos) << denied.output;

  auto pending = Requests({"list"}, "bob");
  EXPECT_NE(pending.output.find("no pending approval requests"), std::string::npos) << pending.output;
  auto all = Requests({"list", "--all"}, "audrey");
  ASSERT_EQ(all.exit_code, 0) << all.output;
  EXPECT_NE(all.output.find("by bob"), std::string::npos) << all.output;
  EXPECT_NE(all.output.find("by alice"), std::string::npos) << all.output;
  auto as_json = Requests({"list", "--all", "--json"}, "audrey");
  ASSERT_EQ(as_json.exit_code, 0) << as_json.output;
  boost::system::error_code ec;
  const auto parsed = json::parse(as_json.output, ec);
  ASSERT_FALSE(ec) << as_json.output;
  const auto& requests = parsed.at("requests").as_array();
  ASSERT_EQ(requests.size(), 2u);
  for (const auto& r : requests) {
    if (r.at("id").as_string() == first) {
      EXPECT_EQ(r.at("state").as_string(), "approved");
      EXPECT_EQ(r.at("comment").as_string(), "go ahead");
    } else {
      EXPECT_EQ(r.at("state").as_string(), "denied");
      EXPECT_EQ(r.at("decided_by").as_string(), "alice");
    }
  }

  // No token at all: a usage error before anything is sent.
  auto no_token = RunLifeline({"policy", "requests", "list", "--url", fmt::format("https://127.0.0.1:{}", port_),
                               "--ca-file", ca_});
  EXPECT_EQ(no_token.exit_code, 2) << no_token.output;
}

}  // namespace
}  // namespace lifeline::testing
