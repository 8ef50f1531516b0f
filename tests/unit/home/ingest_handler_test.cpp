// Every way the home refuses a batch or an enrollment, through the real handler, store and crypto, with
// a fake clock and without sockets: each refusal has its own error, and a refused batch stores nothing.
#include "home/ingest_handler.h"

#include "crypto/envelope.h"
#include "crypto/pki.h"
#include "crypto/token.h"
#include "protocol/codec.h"
#include "store/sqlite/home_store.h"
#include "support/fake_clock.h"
#include "support/temp_dir.h"

#include <boost/json.hpp>
#include <gtest/gtest.h>

namespace lifeline::home {
namespace {

using protocol::Reject;

class IngestHandlerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(crypto::InitPki(dir_ / "pki"));
    const crypto::PkiPaths paths(dir_ / "pki");
    auto store = store::SqliteHomeStore::Open(dir_ / "home.db");
    ASSERT_TRUE(store);
    store_ = std::move(*store);
    HomeKeys keys{*crypto::ReadSealingKeyPair(paths.home_seal_key), *crypto::ReadSigningKeyPair(paths.home_sign_key),
                  *crypto::ReadSmallFile(paths.ca_cert, 1 << 20), *crypto::ReadSmallFile(paths.ca_key, 1 << 20, true)};
    home_sign_public_ = keys.sign.public_key;
    home_seal_public_ = keys.seal.public_key;
    handler_ = std::make_unique<IngestHandler>(
        *store_, keys, IngestSettings{.email_contacts = {"oncall@example.com"}}, clock_, [this] { ++wakes_; });
    device_ = Enroll({"ACME", "berlin-1", "SN-1", "M"});
  }

  struct Device {
    protocol::DeviceIdentity identity;
    crypto::SigningKeyPair sign;
    std::string cert_pem;
  };

  std::string IssueToken(const protocol::DeviceIdentity& identity, std::chrono::seconds ttl = std::chrono::hours(1),
                         store::EnrollmentKind kind = store::EnrollmentKind::kDevice) {
    const std::string token = crypto::GenerateToken("llt");
    EXPECT_TRUE(store_->CreateEnrollmentToken(crypto::HashToken(token), identity,
                                              clock_.NowUnixMillis() + ttl.count() * 1000, clock_.NowUnixMillis(),
                                              kind));
    return token;
  }

  transport::HttpResponse EnrollRequest(const protocol::DeviceIdentity& identity, const std::string& token,
                                        const crypto::SigningKeyPair& sign, std::string csr = "",
                                        bool gateway = false, std::vector<std::string> server_names = {}) {
    if (csr.empty()) {
      csr = *crypto::MakeCsr(crypto::GeneratePrivateKeyPem(), identity);
    }
    transport::HttpRequest request{.method = "POST", .target = "/v1/enroll", .remote = "test"};
    request.body = protocol::EncodeEnrollRequest({.token = token,
                                                  .device = identity,
                                                  .csr_pem = csr,
                                                  .signing_public_key = crypto::Base64Encode(sign.public_key),
                                                  .gateway = gateway,
                                                  .server_names = std::move(server_names)});
    return handler_->Handle(request);
  }

  /// A gateway of device_'s site, enrolled with a gateway token: its certificate PEM.
  std::string EnrollGateway(const protocol::DeviceIdentity& gateway) {
    auto response = EnrollRequest(gateway, IssueToken(gateway, std::chrono::hours(1), store::EnrollmentKind::kGateway),
                                  crypto::GenerateSigningKeyPair(), "", true, {"localhost", "127.0.0.1"});
    EXPECT_EQ(response.status, 200) << response.body;
    std::string why;
    auto decoded = protocol::DecodeEnrollResponse(response.body, &why);
    return decoded ? decoded->certificate_pem : "";
  }

  Device Enroll(const protocol::DeviceIdentity& identity) {
    Device d{identity, crypto::GenerateSigningKeyPair(), ""};
    auto response = EnrollRequest(identity, IssueToken(identity), d.sign);
    EXPECT_EQ(response.status, 200) << response.body;
    std::string why;
    auto decoded = protocol::DecodeEnrollResponse(response.body, &why);
    EXPECT_TRUE(decoded) << why;
    d.cert_pem = decoded ? decoded->certificate_pem : "";
    return d;
  }

  protocol::Batch MakeBatch(const protocol::DeviceIdentity& identity, const std::string& code) {
    protocol::Batch batch{.batch_id = crypto::RandomHex(16), .device = identity, .sent_at_ms = clock_.NowUnixMillis()};
    protocol::Message m{.id = crypto::RandomHex(16), .type = protocol::MessageType::kAlert, .sequence = 1,
                        .timestamp_ms = clock_.NowUnixMillis()};
    m.alert = {code, protocol::Severity::kCritical, "disk failed", "test"};
    batch.messages.push_back(m);
    return batch;
  }

  transport::HttpResponse Post(const std::string& body, std::optional<std::string> cert_pem) {
    transport::HttpRequest request{.method = "POST", .target = "/v1/batches", .body = body, .remote = "test"};
    if (cert_pem) {
      request.peer = transport::PeerCertificate{*cert_pem};
    }
    return handler_->Handle(request);
  }

  std::string Sealed(const protocol::Batch& batch, const crypto::SigningKeyPair& key) {
    auto bytes = crypto::SealEnvelope(crypto::AsBytes(protocol::EncodeBatch(batch)), key, home_seal_public_);
    return std::string(bytes.begin(), bytes.end());
  }

  store::HomeStats Stats() { return *store_->Stats(); }

  void ExpectRefused(const transport::HttpResponse& response, Reject reason) {
    EXPECT_EQ(response.status, protocol::HttpStatus(reason)) << response.body;
    std::string message;
    EXPECT_EQ(protocol::DecodeError(response.body, &message), reason) << response.body;
    EXPECT_FALSE(message.empty());
  }

  void ExpectNothingStored(const store::HomeStats& before) {
    const auto after = Stats();
    EXPECT_EQ(after.alerts, before.alerts);
    EXPECT_EQ(after.tickets, before.tickets);
    EXPECT_EQ(after.emails_pending + after.emails_sent, before.emails_pending + before.emails_sent);
  }

  testing::TempDir dir_;
  testing::FakeClock clock_;
  std::unique_ptr<store::HomeStore> store_;
  std::unique_ptr<IngestHandler> handler_;
  std::array<std::uint8_t, 32> home_sign_public_{};
  std::array<std::uint8_t, 32> home_seal_public_{};
  int wakes_ = 0;
  Device device_;
};

TEST_F(IngestHandlerTest, AcceptsAndSignsTheReply) {
  auto batch = MakeBatch(device_.identity, "SIM-1");
  auto response = Post(Sealed(batch, device_.sign), device_.cert_pem);
  ASSERT_EQ(response.status, 200) << response.body;
  std::string signature_b64;
  for (const auto& [name, value] : response.headers) {
    if (name == "Lifeline-Signature") {
      signature_b64 = value;
    }
  }
  auto signature = crypto::Base64Decode(signature_b64);
  ASSERT_TRUE(signature);
  EXPECT_TRUE(crypto::Verify(crypto::AsBytes(response.body), *signature, home_sign_public_));
  std::string why;
  auto reply = protocol::DecodeReply(response.body, &why);
  ASSERT_TRUE(reply) << why;
  EXPECT_EQ(reply->batch_id, batch.batch_id);
  ASSERT_EQ(reply->results.size(), 1u);
  EXPECT_EQ(reply->results[0].ticket, "LL-000001");
  EXPECT_EQ(Stats().emails_pending, 1);
  EXPECT_EQ(wakes_, 1);
  EXPECT_EQ(handler_->counters().batches_accepted, 1);
}

TEST_F(IngestHandlerTest, DeviceAsksForItsTicketsAndGetsASignedList) {
  ASSERT_EQ(Post(Sealed(MakeBatch(device_.identity, "SIM-1"), device_.sign), device_.cert_pem).status, 200);
  ASSERT_EQ(Post(Sealed(MakeBatch(device_.identity, "SIM-2"), device_.sign), device_.cert_pem).status, 200);
  const Device other = Enroll({"ACME", "berlin-1", "SN-2", "M"});
  ASSERT_EQ(Post(Sealed(MakeBatch(other.identity, "SIM-9"), other.sign), other.cert_pem).status, 200);

  transport::HttpRequest request{.method = "GET", .target = "/v1/tickets", .remote = "test"};
  request.peer = transport::PeerCertificate{device_.cert_pem};
  auto response = handler_->Handle(request);
  ASSERT_EQ(response.status, 200) << response.body;
  std::string signature_b64;
  for (const auto& [name, value] : response.headers) {
    if (name == "Lifeline-Signature") {
      signature_b64 = value;
    }
  }
  auto signature = crypto::Base64Decode(signature_b64);
  ASSERT_TRUE(signature);
  EXPECT_TRUE(crypto::Verify(crypto::AsBytes(response.body), *signature, home_sign_public_));
  auto body = boost::json::parse(response.body);
  EXPECT_EQ(body.at("device").at("serial").as_string(), "SN-1");
  const auto& tickets = body.at("tickets").as_array();
  ASSERT_EQ(tickets.size(), 2u);  // its own two, not the other device's
  EXPECT_EQ(tickets[0].at("number").as_string(), "LL-000002");
  EXPECT_EQ(tickets[0].at("status").as_string(), "new");
  EXPECT_EQ(tickets[1].at("code").as_string(), "SIM-1");

  // Without a client certificate there is nobody to answer for.
  request.peer.reset();
  ExpectRefused(handler_->Handle(request), Reject::kClientCertRequired);
}

TEST_F(IngestHandlerTest, UnsealFailed) {
  const auto before = Stats();
  std::string sealed = Sealed(MakeBatch(device_.identity, "SIM-1"), device_.sign);
  sealed[sealed.size() / 2] ^= 0x20;
  ExpectRefused(Post(sealed, device_.cert_pem), Reject::kUnsealFailed);
  ExpectNothingStored(before);
  EXPECT_EQ(handler_->counters().batches_refused, 1);
}

TEST_F(IngestHandlerTest, MalformedEnvelope) {
  // Sealed correctly, but the inside is not an envelope (no magic, no signature).
  auto bytes = crypto::Seal(crypto::AsBytes(std::string_view("hello")), home_seal_public_);
  ExpectRefused(Post(std::string(bytes.begin(), bytes.end()), device_.cert_pem), Reject::kMalformedBody);
}

TEST_F(IngestHandlerTest, MalformedBatch) {
  auto bytes = crypto::SealEnvelope(crypto::AsBytes(std::string_view("[1,2,3]")), device_.sign, home_seal_public_);
  ExpectRefused(Post(std::string(bytes.begin(), bytes.end()), device_.cert_pem), Reject::kMalformedBody);
}

TEST_F(IngestHandlerTest, UnsupportedVersion) {
  std::string json = protocol::EncodeBatch(MakeBatch(device_.identity, "SIM-1"));
  json.replace(json.find("\"version\":1"), 11, "\"version\":2");
  auto bytes = crypto::SealEnvelope(crypto::AsBytes(json), device_.sign, home_seal_public_);
  ExpectRefused(Post(std::string(bytes.begin(), bytes.end()), device_.cert_pem), Reject::kUnsupportedVersion);
}

TEST_F(IngestHandlerTest, BadSignature) {
  const auto before = Stats();
  ExpectRefused(Post(Sealed(MakeBatch(device_.identity, "SIM-1"), crypto::GenerateSigningKeyPair()), device_.cert_pem),
                Reject::kBadSignature);
  ExpectNothingStored(before);
}

TEST_F(IngestHandlerTest, IdentityMismatch) {
  const Device other = Enroll({"ACME", "berlin-1", "SN-2", "M"});
  const auto before = Stats();
  ExpectRefused(Post(Sealed(MakeBatch(other.identity, "SIM-1"), other.sign), device_.cert_pem),
                Reject::kIdentityMismatch);
  ExpectNothingStored(before);
}

TEST_F(IngestHandlerTest, ClientCertificateRequired) {
  ExpectRefused(Post(Sealed(MakeBatch(device_.identity, "SIM-1"), device_.sign), std::nullopt),
                Reject::kClientCertRequired);
}

TEST_F(IngestHandlerTest, DeviceUnknown) {
  const protocol::DeviceIdentity ghost{"ACME", "berlin-1", "SN-GHOST", "M"};
  const crypto::PkiPaths paths(dir_ / "pki");
  auto cert = crypto::IssueDeviceCertificate(*crypto::ReadSmallFile(paths.ca_cert, 1 << 20),
                                             *crypto::ReadSmallFile(paths.ca_key, 1 << 20, true),
                                             *crypto::MakeCsr(crypto::GeneratePrivateKeyPem(), ghost), ghost, 1);
  ASSERT_TRUE(cert);
  ExpectRefused(Post(Sealed(MakeBatch(ghost, "SIM-1"), crypto::GenerateSigningKeyPair()), cert->pem),
                Reject::kDeviceUnknown);
}

TEST_F(IngestHandlerTest, DeviceRevoked) {
  ASSERT_TRUE(store_->RevokeDevice("ACME", "berlin-1", "SN-1"));
  const auto before = Stats();
  ExpectRefused(Post(Sealed(MakeBatch(device_.identity, "SIM-1"), device_.sign), device_.cert_pem),
                Reject::kDeviceRevoked);
  ExpectNothingStored(before);
}

TEST_F(IngestHandlerTest, ClockSkewBothWays) {
  const auto before = Stats();
  auto batch = MakeBatch(device_.identity, "SIM-1");
  batch.sent_at_ms += 301'000;  // the default bound is 300 s
  ExpectRefused(Post(Sealed(batch, device_.sign), device_.cert_pem), Reject::kClockSkew);
  batch.sent_at_ms -= 602'000;
  batch.batch_id = crypto::RandomHex(16);
  ExpectRefused(Post(Sealed(batch, device_.sign), device_.cert_pem), Reject::kClockSkew);
  ExpectNothingStored(before);
  batch.sent_at_ms += 301'000 + 250'000;  // 50 s behind: within the bound
  batch.batch_id = crypto::RandomHex(16);
  EXPECT_EQ(Post(Sealed(batch, device_.sign), device_.cert_pem).status, 200);
}

TEST_F(IngestHandlerTest, ReplayedBatch) {
  const std::string sealed = Sealed(MakeBatch(device_.identity, "SIM-1"), device_.sign);
  ASSERT_EQ(Post(sealed, device_.cert_pem).status, 200);
  const auto before = Stats();
  ExpectRefused(Post(sealed, device_.cert_pem), Reject::kReplayedBatch);
  ExpectNothingStored(before);
}

TEST_F(IngestHandlerTest, RepeatedMessageInANewBatchHasNoSecondEffect) {
  auto batch = MakeBatch(device_.identity, "SIM-1");
  auto first = Post(Sealed(batch, device_.sign), device_.cert_pem);
  ASSERT_EQ(first.status, 200);
  const auto before = Stats();
  batch.batch_id = crypto::RandomHex(16);
  auto second = Post(Sealed(batch, device_.sign), device_.cert_pem);
  ASSERT_EQ(second.status, 200);
  std::string why;
  auto r1 = protocol::DecodeReply(first.body, &why);
  auto r2 = protocol::DecodeReply(second.body, &why);
  ASSERT_TRUE(r1 && r2);
  EXPECT_EQ(r1->results[0].ticket, r2->results[0].ticket);
  EXPECT_EQ(r1->results[0].status, r2->results[0].status);
  EXPECT_TRUE(r2->results[0].duplicate);
  ExpectNothingStored(before);
}

TEST_F(IngestHandlerTest, UnknownEndpoint) {
  transport::HttpRequest request{.method = "GET", .target = "/v1/nothing"};
  ExpectRefused(handler_->Handle(request), Reject::kNotFound);
}

TEST_F(IngestHandlerTest, EnrollmentTokenReuseIsRefused) {
  const protocol::DeviceIdentity identity{"ACME", "berlin-1", "SN-3", "M"};
  const std::string token = IssueToken(identity);
  EXPECT_EQ(EnrollRequest(identity, token, crypto::GenerateSigningKeyPair()).status, 200);
  ExpectRefused(EnrollRequest(identity, token, crypto::GenerateSigningKeyPair()), Reject::kTokenUsed);
}

TEST_F(IngestHandlerTest, ExpiredEnrollmentTokenIsRefused) {
  const protocol::DeviceIdentity identity{"ACME", "berlin-1", "SN-4", "M"};
  const std::string token = IssueToken(identity, std::chrono::seconds(60));
  clock_.Advance(std::chrono::seconds(61));
  ExpectRefused(EnrollRequest(identity, token, crypto::GenerateSigningKeyPair()), Reject::kTokenExpired);
}

TEST_F(IngestHandlerTest, EnrollmentTokenForAnotherIdentityIsRefused) {
  const std::string token = IssueToken({"ACME", "berlin-1", "SN-5", "M"});
  ExpectRefused(EnrollRequest({"ACME", "berlin-1", "SN-6", "M"}, token, crypto::GenerateSigningKeyPair()),
                Reject::kTokenIdentityMismatch);
  // The token was not consumed by the refused attempt: its rightful device can still use it.
  EXPECT_EQ(EnrollRequest({"ACME", "berlin-1", "SN-5", "M"}, token, crypto::GenerateSigningKeyPair()).status, 200);
}

TEST_F(IngestHandlerTest, UnknownEnrollmentTokenIsRefused) {
  ExpectRefused(EnrollRequest({"ACME", "berlin-1", "SN-7", "M"}, "llt_nope", crypto::GenerateSigningKeyPair()),
                Reject::kTokenUnknown);
}

TEST_F(IngestHandlerTest, BadCsrIsRefused) {
  const protocol::DeviceIdentity identity{"ACME", "berlin-1", "SN-8", "M"};
  ExpectRefused(EnrollRequest(identity, IssueToken(identity), crypto::GenerateSigningKeyPair(), "not a csr"),
                Reject::kBadCsr);
}

TEST_F(IngestHandlerTest, IssuedCertificateCarriesTheTokensIdentityNotTheCsrs) {
  const protocol::DeviceIdentity identity{"ACME", "berlin-1", "SN-9", "M"};
  // The CSR claims to be SN-1; the token (and request) say SN-9: the certificate must say SN-9.
  const std::string csr = *crypto::MakeCsr(crypto::GeneratePrivateKeyPem(), device_.identity);
  auto response = EnrollRequest(identity, IssueToken(identity), crypto::GenerateSigningKeyPair(), csr);
  ASSERT_EQ(response.status, 200) << response.body;
  std::string why;
  auto decoded = protocol::DecodeEnrollResponse(response.body, &why);
  ASSERT_TRUE(decoded);
  auto cert_identity = crypto::IdentityFromCertificatePem(decoded->certificate_pem);
  ASSERT_TRUE(cert_identity);
  EXPECT_EQ(cert_identity->serial, "SN-9");
}

TEST_F(IngestHandlerTest, GatewayTokenEnrollsAGatewayCertificate) {
  const protocol::DeviceIdentity gateway{"ACME", "berlin-1", "gw-1", "lifeline-gateway"};
  const std::string cert = EnrollGateway(gateway);
  auto peer = crypto::PeerFromCertificatePem(cert);
  ASSERT_TRUE(peer);
  EXPECT_EQ(peer->kind, crypto::PeerKind::kGateway);
  EXPECT_EQ(peer->identity, gateway);
  auto row = store_->FindDevice("ACME", "berlin-1", "gw-1");
  ASSERT_TRUE(row && row->has_value());
  EXPECT_EQ((*row)->kind, store::EnrollmentKind::kGateway);

  // A device token does not make a gateway, a gateway token does not make a device.
  const protocol::DeviceIdentity second{"ACME", "berlin-1", "gw-2", "lifeline-gateway"};
  ExpectRefused(EnrollRequest(second, IssueToken(second), crypto::GenerateSigningKeyPair(), "", true),
                Reject::kTokenIdentityMismatch);
  const protocol::DeviceIdentity device{"ACME", "berlin-1", "SN-20", "M"};
  ExpectRefused(EnrollRequest(device, IssueToken(device, std::chrono::hours(1), store::EnrollmentKind::kGateway),
                              crypto::GenerateSigningKeyPair()),
                Reject::kTokenIdentityMismatch);
  // Server names are host names or addresses.
  ExpectRefused(EnrollRequest(second, IssueToken(second, std::chrono::hours(1), store::EnrollmentKind::kGateway),
                              crypto::GenerateSigningKeyPair(), "", true, {"not a name"}),
                Reject::kMalformedBody);
  // A gateway certificate is not a device's: it cannot send batches of its own.
  auto batch = MakeBatch(gateway, "SIM-1");
  ExpectRefused(Post(Sealed(batch, device_.sign), cert), Reject::kIdentityMismatch);
}

transport::HttpRequest Relayed(transport::HttpRequest request, const std::string& gateway_cert,
                               const std::string& device_cert, std::optional<std::int64_t> received_at_ms = {}) {
  request.peer = transport::PeerCertificate{gateway_cert};
  request.headers["lifeline-relayed-certificate"] = crypto::Base64Encode(crypto::AsBytes(device_cert));
  if (received_at_ms) {
    request.headers["lifeline-relay-received-at"] = std::to_string(*received_at_ms);
  }
  return request;
}

TEST_F(IngestHandlerTest, GatewayRelaysABatchOfItsSiteAndTheDeviceChecksStillApply) {
  const std::string gateway_cert = EnrollGateway({"ACME", "berlin-1", "gw-1", "lifeline-gateway"});
  auto batch = MakeBatch(device_.identity, "SIM-1");
  transport::HttpRequest request{.method = "POST", .target = "/v1/batches", .body = Sealed(batch, device_.sign),
                                 .remote = "gateway"};
  auto response = handler_->Handle(Relayed(request, gateway_cert, device_.cert_pem));
  ASSERT_EQ(response.status, 200) << response.body;
  std::string why;
  auto reply = protocol::DecodeReply(response.body, &why);
  ASSERT_TRUE(reply) << why;
  EXPECT_EQ(reply->results.at(0).ticket, "LL-000001");

  // The device's tickets, through the gateway too.
  transport::HttpRequest tickets{.method = "GET", .target = "/v1/tickets", .remote = "gateway"};
  auto listed = handler_->Handle(Relayed(tickets, gateway_cert, device_.cert_pem));
  ASSERT_EQ(listed.status, 200) << listed.body;
  EXPECT_NE(listed.body.find("LL-000001"), std::string::npos);

  // The usual checks apply to the relayed device: a signature by another key is refused...
  auto other_key = MakeBatch(device_.identity, "SIM-2");
  request.body = Sealed(other_key, crypto::GenerateSigningKeyPair());
  ExpectRefused(handler_->Handle(Relayed(request, gateway_cert, device_.cert_pem)), Reject::kBadSignature);
  // ...and a revoked device stays revoked.
  ASSERT_TRUE(store_->RevokeDevice("ACME", "berlin-1", "SN-1"));
  request.body = Sealed(MakeBatch(device_.identity, "SIM-3"), device_.sign);
  ExpectRefused(handler_->Handle(Relayed(request, gateway_cert, device_.cert_pem)), Reject::kDeviceRevoked);
}

TEST_F(IngestHandlerTest, OnlyAGatewayOfTheDevicesSiteMayRelay) {
  const auto before = Stats();
  auto batch = MakeBatch(device_.identity, "SIM-1");
  transport::HttpRequest request{.method = "POST", .target = "/v1/batches", .body = Sealed(batch, device_.sign),
                                 .remote = "peer"};
  // A plain device certificate cannot relay (not even for itself, and not for another device).
  const Device other = Enroll({"ACME", "berlin-1", "SN-2", "M"});
  ExpectRefused(handler_->Handle(Relayed(request, other.cert_pem, device_.cert_pem)), Reject::kIdentityMismatch);
  ExpectRefused(handler_->Handle(Relayed(request, device_.cert_pem, device_.cert_pem)), Reject::kIdentityMismatch);
  // A gateway of another site, or of another customer, cannot relay for this device.
  const std::string other_site = EnrollGateway({"ACME", "hamburg", "gw-1", "lifeline-gateway"});
  ExpectRefused(handler_->Handle(Relayed(request, other_site, device_.cert_pem)), Reject::kIdentityMismatch);
  const std::string other_customer = EnrollGateway({"OTHER", "berlin-1", "gw-1", "lifeline-gateway"});
  ExpectRefused(handler_->Handle(Relayed(request, other_customer, device_.cert_pem)), Reject::kIdentityMismatch);
  // The relayed certificate must come from this home's CA.
  const std::string gateway_cert = EnrollGateway({"ACME", "berlin-1", "gw-1", "lifeline-gateway"});
  testing::TempDir other_pki;
  ASSERT_TRUE(crypto::InitPki(other_pki / "pki"));
  const crypto::PkiPaths foreign(other_pki / "pki");
  auto foreign_cert = crypto::IssueDeviceCertificate(
      *crypto::ReadSmallFile(foreign.ca_cert, 1 << 20), *crypto::ReadSmallFile(foreign.ca_key, 1 << 20, true),
      *crypto::MakeCsr(crypto::GeneratePrivateKeyPem(), device_.identity), device_.identity, 30);
  ASSERT_TRUE(foreign_cert);
  ExpectRefused(handler_->Handle(Relayed(request, gateway_cert, foreign_cert->pem)), Reject::kIdentityMismatch);
  // The relayed certificate must name the batch's device.
  ExpectRefused(handler_->Handle(Relayed(request, gateway_cert, other.cert_pem)), Reject::kIdentityMismatch);
  // A revoked gateway relays nothing.
  ASSERT_TRUE(store_->RevokeDevice("ACME", "berlin-1", "gw-1"));
  ExpectRefused(handler_->Handle(Relayed(request, gateway_cert, device_.cert_pem)), Reject::kDeviceRevoked);
  ExpectNothingStored(before);
}

TEST_F(IngestHandlerTest, HeldBatchIsCheckedAgainstTheGatewaysReceiveTime) {
  const std::string gateway_cert = EnrollGateway({"ACME", "berlin-1", "gw-1", "lifeline-gateway"});
  auto batch = MakeBatch(device_.identity, "SIM-1");
  const std::int64_t received = clock_.NowUnixMillis();
  clock_.Advance(std::chrono::hours(2));  // the home was away for two hours
  transport::HttpRequest request{.method = "POST", .target = "/v1/batches", .body = Sealed(batch, device_.sign),
                                 .remote = "gateway"};
  // Directly, the batch would be two hours old; held by the gateway it is on time.
  request.peer = transport::PeerCertificate{device_.cert_pem};
  ExpectRefused(handler_->Handle(request), Reject::kClockSkew);
  auto response = handler_->Handle(Relayed(request, gateway_cert, device_.cert_pem, received));
  EXPECT_EQ(response.status, 200) << response.body;
  // A receive time in the future is refused.
  request.body = Sealed(MakeBatch(device_.identity, "SIM-2"), device_.sign);
  ExpectRefused(handler_->Handle(Relayed(request, gateway_cert, device_.cert_pem,
                                         clock_.NowUnixMillis() + 3'600'000)),
                Reject::kClockSkew);
}

}  // namespace
}  // namespace lifeline::home
