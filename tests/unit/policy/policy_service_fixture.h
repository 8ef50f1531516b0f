#pragma once
// A real PolicyService on loopback HTTPS for the policy API tests: its own PKI (crypto::InitPki: the
// CA signs the service's certificate and the gateways' client certificates), API tokens made on its
// users, and a client that calls it with a token and/or a client certificate.
#include "crypto/keys.h"
#include "crypto/pki.h"
#include "policy/policy_server.h"
#include "support/temp_dir.h"
#include "transport/http_client.h"

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace lifeline::policy::testing {

namespace json = boost::json;

/// A client certificate and key on disk.
struct ClientIdentity {
  std::filesystem::path cert, key;
};

class PolicyServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(crypto::InitPki(dir_ / "pki"));
    auto ca = crypto::ReadSmallFile(dir_ / "pki" / "ca.crt", 1 << 20);
    auto ca_key = crypto::ReadSmallFile(dir_ / "pki" / "ca.key", 1 << 20, true);
    ASSERT_TRUE(ca && ca_key);
    ca_pem_ = *ca;
    ca_key_pem_ = *ca_key;
    ASSERT_NO_FATAL_FAILURE(StartService());
    auto admin = service_->users().CreateToken("admin-1", Role::kAdmin, std::nullopt, "test");
    auto auditor = service_->users().CreateToken("auditor-1", Role::kAuditor, std::nullopt, "test");
    ASSERT_TRUE(admin && auditor);
    admin_token_ = admin->token;
    auditor_token_ = auditor->token;
  }
  void TearDown() override {
    if (service_) {
      service_->Stop();
    }
  }

  /// What the tests may change before SetUp starts the service.
  virtual void Configure(PolicyConfig&) {}

  void StartService() {
    PolicyConfig config;
    config.data_dir = (dir_ / "data").string();
    config.https_listen = "127.0.0.1:0";
    config.cert_file = (dir_ / "pki" / "home.crt").string();
    config.key_file = (dir_ / "pki" / "home.key").string();
    config.client_ca_file = (dir_ / "pki" / "ca.crt").string();
    config.worker_threads = 8;
    Configure(config);
    auto service = PolicyService::Start(config);
    ASSERT_TRUE(service) << service.error().message();
    service_ = std::move(*service);
  }

  ClientIdentity Issue(const protocol::DeviceIdentity& identity, crypto::PeerKind kind) {
    const std::string key = crypto::GeneratePrivateKeyPem();
    auto csr = crypto::MakeCsr(key, identity, kind);
    EXPECT_TRUE(csr);
    auto issued = kind == crypto::PeerKind::kGateway
                      ? crypto::IssueGatewayCertificate(ca_pem_, ca_key_pem_, *csr, identity, {"127.0.0.1"}, 30)
                      : crypto::IssueDeviceCertificate(ca_pem_, ca_key_pem_, *csr, identity, 30);
    EXPECT_TRUE(issued);
    const std::string name = identity.customer + "-" + identity.site + "-" + identity.serial;
    ClientIdentity out{dir_ / (name + ".crt"), dir_ / (name + ".key")};
    EXPECT_TRUE(crypto::WriteFileAtomically(out.cert, issued->pem, 0644));
    EXPECT_TRUE(crypto::WritePrivateKeyPem(out.key, key));
    return out;
  }

  struct Answer {
    int status = 0;
    json::value body;
  };
  Answer Call(const std::string& method, const std::string& path, const std::string& token,
              const std::string& body = "", const std::optional<ClientIdentity>& cert = std::nullopt) {
    transport::ClientTls tls{(dir_ / "pki" / "ca.crt").string(), "", ""};
    if (cert) {
      tls.cert_file = cert->cert.string();
      tls.key_file = cert->key.string();
    }
    transport::HttpClient client(tls);
    transport::ClientRequest request;
    request.method = method;
    request.url = "https://127.0.0.1:" + std::to_string(service_->server().LocalPort()) + path;
    request.body = body;
    request.content_type = body.empty() ? "" : "application/json";
    if (!token.empty()) {
      request.headers.emplace_back("Authorization", "Bearer " + token);
    }
    auto response = client.Send(request);
    EXPECT_TRUE(response) << (response ? "" : response.error().message() + ": " + client.LastErrorDetail());
    if (!response) {
      return {};
    }
    boost::system::error_code ec;
    json::value parsed = json::parse(response->body, ec);
    return {response->status, ec ? json::value(response->body) : parsed};
  }
  Answer Gateway(const std::string& method, const std::string& path, const ClientIdentity& cert,
                 const std::string& body = "") {
    return Call(method, path, "", body, cert);
  }

  lifeline::testing::TempDir dir_;
  std::string ca_pem_, ca_key_pem_;
  std::unique_ptr<PolicyService> service_;
  std::string admin_token_, auditor_token_;
};

/// A valid policy set: one group, two rules (one in the group), one grant.
inline json::object SamplePolicy() {
  return json::object{
      {"groups", json::array{json::object{{"name", "rack-a"}, {"serials", json::array{"SN41000", "SN41001"}}}}},
      {"rules", json::array{json::object{{"id", 7},
                                         {"activity", "remote_session"},
                                         {"application", "ssh"},
                                         {"scope", json::object{{"kind", "group"}, {"name", "rack-a"}}},
                                         {"action", "ask_for_approval"},
                                         {"ask_timeout_s", 1200}},
                            json::object{{"id", 9},
                                         {"activity", "connect_home"},
                                         {"scope", json::object{{"kind", "site"}}},
                                         {"action", "always_allow"}}}},
      {"grants", json::array{json::object{{"id", 3},
                                          {"engineer", "alice"},
                                          {"scope", json::object{{"kind", "device"}, {"name", "SN41000"}}},
                                          {"activities", json::array{"remote_session"}},
                                          {"starts_at_ms", 1795000000000},
                                          {"ends_at_ms", 1795014400000},
                                          {"granted_by", "carol"},
                                          {"reason", "SR-1234"}}}}};
}

}  // namespace lifeline::policy::testing
