// The home refuses, each with its own error and without storing anything: a tampered batch, a replayed
// batch, a batch whose device differs from the TLS certificate's, a bad signature, an unknown or revoked
// device, clock skew, malformed and oversized bodies; and a reused enrollment token.
#include "common/clock.h"
#include "crypto/envelope.h"
#include "crypto/keys.h"
#include "crypto/pki.h"
#include "protocol/codec.h"
#include "store/sqlite/home_store.h"
#include "support/harness.h"
#include "transport/http_client.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

namespace lifeline::testing {
namespace {

using protocol::Reject;

class Rejection : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    mail_ = new MailSink(*dir_ / "mail");
    home_ = new TestHome(*dir_ / "home", mail_->port());
    home_->Start();
    for (const char* serial : {"SN-A", "SN-B"}) {
      auto* agent = new TestAgent(*dir_ / serial, *home_, serial);
      auto enrolled = agent->Enroll(home_->EnrollToken(agent->identity()));
      ASSERT_EQ(enrolled.exit_code, 0) << enrolled.output;
      agents_.push_back(agent);
    }
  }
  static void TearDownTestSuite() {
    home_->Stop();
    for (auto* a : agents_) {
      delete a;
    }
    agents_.clear();
    delete home_;
    delete mail_;
    delete dir_;
  }

  // A device's credentials, read from the agent's PKI directory as the agent would.
  struct Device {
    protocol::DeviceIdentity identity;
    crypto::SigningKeyPair sign;
    std::string cert_file, key_file;
  };
  static Device LoadDevice(const TestAgent& agent) {
    auto sign = crypto::ReadSigningKeyPair(agent.pki_dir() / "device-sign.key");
    EXPECT_TRUE(sign);
    return {agent.identity(), *sign, (agent.pki_dir() / "device.crt").string(),
            (agent.pki_dir() / "device.key").string()};
  }

  static protocol::Batch MakeBatch(const protocol::DeviceIdentity& device, const std::string& code) {
    protocol::Batch batch;
    batch.batch_id = crypto::RandomHex(16);
    batch.device = device;
    batch.sent_at_ms = SystemClock::Instance().NowUnixMillis();
    protocol::Message m;
    m.id = crypto::RandomHex(16);
    m.type = protocol::MessageType::kAlert;
    m.sequence = 1;
    m.timestamp_ms = batch.sent_at_ms;
    m.alert = {code, protocol::Severity::kCritical, "test alert", "test"};
    batch.messages.push_back(m);
    return batch;
  }

  static std::vector<std::uint8_t> Seal(const protocol::Batch& batch, const crypto::SigningKeyPair& key) {
    auto home_seal = crypto::ReadPublicKey(home_->pki_dir() / "home-seal.pub", crypto::KeyKind::kX25519Public);
    EXPECT_TRUE(home_seal);
    return crypto::SealEnvelope(crypto::AsBytes(protocol::EncodeBatch(batch)), key, *home_seal);
  }

  static transport::ClientResponse Post(const std::string& cert_file, const std::string& key_file,
                                        const std::vector<std::uint8_t>& body) {
    transport::HttpClient client(
        transport::ClientTls{(home_->pki_dir() / "ca.crt").string(), cert_file, key_file});
    auto response = client.Send({.url = home_->ingest_url() + "/v1/batches",
                                 .content_type = "application/vnd.lifeline.sealed-batch",
                                 .body = std::string(body.begin(), body.end())});
    EXPECT_TRUE(response) << (response ? "" : response.error().message());
    return response ? *response : transport::ClientResponse{};
  }

  static Reject ErrorOf(const transport::ClientResponse& response) {
    std::string message;
    return protocol::DecodeError(response.body, &message);
  }

  // What the home has stored; a refusal must leave all of it unchanged.
  static std::string StoredState() {
    // One snapshot: an email moving from pending to sent between two reads would be counted in neither.
    const auto stats = home_->Admin("/v1/stats").as_object();
    auto get = [&](const char* key) { return stats.at(key).to_number<std::int64_t>(); };
    return fmt::format("devices={} alerts={} tickets={} emails={}", get("devices"), get("alerts"), get("tickets"),
                       get("emails_sent") + get("emails_pending"));
  }

  static TempDir* dir_;
  static MailSink* mail_;
  static TestHome* home_;
  static std::vector<TestAgent*> agents_;
};

TempDir* Rejection::dir_ = nullptr;
MailSink* Rejection::mail_ = nullptr;
TestHome* Rejection::home_ = nullptr;
std::vector<TestAgent*> Rejection::agents_;

TEST_F(Rejection, AGoodBatchIsAccepted) {
  const Device a = LoadDevice(*agents_[0]);
  auto response = Post(a.cert_file, a.key_file, Seal(MakeBatch(a.identity, "GOOD-1"), a.sign));
  ASSERT_EQ(response.status, 200) << response.body;
  EXPECT_FALSE(response.headers["lifeline-signature"].empty());
}

TEST_F(Rejection, TamperedBatch) {
  const Device a = LoadDevice(*agents_[0]);
  const std::string before = StoredState();
  auto sealed = Seal(MakeBatch(a.identity, "TAMPER-1"), a.sign);
  sealed[sealed.size() / 2] ^= 0x01;
  auto response = Post(a.cert_file, a.key_file, sealed);
  EXPECT_EQ(response.status, 400);
  EXPECT_EQ(ErrorOf(response), Reject::kUnsealFailed) << response.body;
  EXPECT_EQ(StoredState(), before);
}

TEST_F(Rejection, ReplayedBatch) {
  const Device a = LoadDevice(*agents_[0]);
  const auto sealed = Seal(MakeBatch(a.identity, "REPLAY-1"), a.sign);
  auto first = Post(a.cert_file, a.key_file, sealed);
  ASSERT_EQ(first.status, 200) << first.body;
  const std::string before = StoredState();
  auto replay = Post(a.cert_file, a.key_file, sealed);
  EXPECT_EQ(replay.status, 409);
  EXPECT_EQ(ErrorOf(replay), Reject::kReplayedBatch) << replay.body;
  EXPECT_EQ(StoredState(), before);
}

TEST_F(Rejection, RepeatedMessageIdInANewBatchGetsTheSameAnswerAndNoSecondEffect) {
  const Device a = LoadDevice(*agents_[0]);
  auto batch = MakeBatch(a.identity, "REPEAT-1");
  auto first = Post(a.cert_file, a.key_file, Seal(batch, a.sign));
  ASSERT_EQ(first.status, 200) << first.body;
  const std::string before = StoredState();
  batch.batch_id = crypto::RandomHex(16);  // a retry: new batch, same message
  auto again = Post(a.cert_file, a.key_file, Seal(batch, a.sign));
  ASSERT_EQ(again.status, 200) << again.body;
  std::string why;
  auto r1 = protocol::DecodeReply(first.body, &why);
  auto r2 = protocol::DecodeReply(again.body, &why);
  ASSERT_TRUE(r1 && r2) << why;
  EXPECT_EQ(r2->results[0].ticket, r1->results[0].ticket);
  EXPECT_TRUE(r2->results[0].duplicate);
  EXPECT_EQ(StoredState(), before);
}

TEST_F(Rejection, BatchForAnotherDeviceThanTheTlsCertificate) {
  const Device a = LoadDevice(*agents_[0]);
  const Device b = LoadDevice(*agents_[1]);
  const std::string before = StoredState();
  // B's batch, properly signed by B, but sent with A's certificate.
  auto response = Post(a.cert_file, a.key_file, Seal(MakeBatch(b.identity, "MISMATCH-1"), b.sign));
  EXPECT_EQ(response.status, 403);
  EXPECT_EQ(ErrorOf(response), Reject::kIdentityMismatch) << response.body;
  EXPECT_EQ(StoredState(), before);
}

TEST_F(Rejection, BadSignature) {
  const Device a = LoadDevice(*agents_[0]);
  const std::string before = StoredState();
  auto response = Post(a.cert_file, a.key_file, Seal(MakeBatch(a.identity, "SIG-1"), crypto::GenerateSigningKeyPair()));
  EXPECT_EQ(response.status, 403);
  EXPECT_EQ(ErrorOf(response), Reject::kBadSignature) << response.body;
  EXPECT_EQ(StoredState(), before);
}

TEST_F(Rejection, ClockSkew) {
  const Device a = LoadDevice(*agents_[0]);
  const std::string before = StoredState();
  auto batch = MakeBatch(a.identity, "SKEW-1");
  batch.sent_at_ms -= 3'600'000;
  auto response = Post(a.cert_file, a.key_file, Seal(batch, a.sign));
  EXPECT_EQ(response.status, 400);
  EXPECT_EQ(ErrorOf(response), Reject::kClockSkew) << response.body;
  EXPECT_EQ(StoredState(), before);
}

TEST_F(Rejection, MalformedBatchInsideAValidEnvelope) {
  const Device a = LoadDevice(*agents_[0]);
  const std::string before = StoredState();
  auto home_seal = crypto::ReadPublicKey(home_->pki_dir() / "home-seal.pub", crypto::KeyKind::kX25519Public);
  ASSERT_TRUE(home_seal);
  auto sealed = crypto::SealEnvelope(crypto::AsBytes(std::string_view("{\"version\":1,\"oops\":true}")), a.sign,
                                     *home_seal);
  auto response = Post(a.cert_file, a.key_file, sealed);
  EXPECT_EQ(response.status, 400);
  EXPECT_EQ(ErrorOf(response), Reject::kMalformedBody) << response.body;
  EXPECT_EQ(StoredState(), before);
}

TEST_F(Rejection, OversizedBody) {
  const Device a = LoadDevice(*agents_[0]);
  const std::string before = StoredState();
  auto response = Post(a.cert_file, a.key_file, std::vector<std::uint8_t>(2 * 1024 * 1024, 'x'));
  EXPECT_EQ(response.status, 413);
  EXPECT_EQ(ErrorOf(response), Reject::kBodyTooLarge) << response.body;
  EXPECT_EQ(StoredState(), before);
}

TEST_F(Rejection, NoClientCertificate) {
  const Device a = LoadDevice(*agents_[0]);
  auto response = Post("", "", Seal(MakeBatch(a.identity, "NOCERT-1"), a.sign));
  EXPECT_EQ(response.status, 401);
  EXPECT_EQ(ErrorOf(response), Reject::kClientCertRequired) << response.body;
}

TEST_F(Rejection, UnknownDeviceWithACertificateFromTheCa) {
  // A certificate the CA signed but for a device that never enrolled (e.g. issued by hand).
  const std::string before = StoredState();
  const protocol::DeviceIdentity ghost{"ACME", "berlin-1", "SN-GHOST", "x"};
  const std::string key_pem = crypto::GeneratePrivateKeyPem();
  auto csr = crypto::MakeCsr(key_pem, ghost);
  ASSERT_TRUE(csr);
  auto ca_cert = crypto::ReadSmallFile(home_->pki_dir() / "ca.crt", 1 << 20);
  auto ca_key = crypto::ReadSmallFile(home_->pki_dir() / "ca.key", 1 << 20, true);
  ASSERT_TRUE(ca_cert && ca_key);
  auto cert = crypto::IssueDeviceCertificate(*ca_cert, *ca_key, *csr, ghost, 1);
  ASSERT_TRUE(cert);
  WriteFile(*dir_ / "ghost.crt", cert->pem);
  ASSERT_TRUE(crypto::WritePrivateKeyPem(*dir_ / "ghost.key", key_pem));
  auto response = Post((*dir_ / "ghost.crt").string(), (*dir_ / "ghost.key").string(),
                       Seal(MakeBatch(ghost, "GHOST-1"), crypto::GenerateSigningKeyPair()));
  EXPECT_EQ(response.status, 403);
  EXPECT_EQ(ErrorOf(response), Reject::kDeviceUnknown) << response.body;
  EXPECT_EQ(StoredState(), before);
}

TEST_F(Rejection, ReusedEnrollmentToken) {
  TestAgent late(*dir_ / "late", *home_, "SN-LATE");
  const std::string token = home_->EnrollToken(late.identity());
  auto first = late.Enroll(token);
  ASSERT_EQ(first.exit_code, 0) << first.output;
  // The same token again, even for the same device with --force, is refused.
  auto again = RunLifeline({"agent", "enroll", "--config", late.config().string(), "--token", token, "--force"});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.output.find("token_used"), std::string::npos) << again.output;
}

TEST_F(Rejection, EnrollmentTokenForAnotherDevice) {
  TestAgent intruder(*dir_ / "intruder", *home_, "SN-INTRUDER");
  const std::string token = home_->EnrollToken({"ACME", "berlin-1", "SN-SOMEONE-ELSE", "x"});
  auto result = intruder.Enroll(token);
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find("token_identity_mismatch"), std::string::npos) << result.output;
  EXPECT_FALSE(std::filesystem::exists(intruder.pki_dir() / "device.crt"));
}

TEST_F(Rejection, UnknownEnrollmentToken) {
  TestAgent stranger(*dir_ / "stranger", *home_, "SN-STRANGER");
  auto result = stranger.Enroll("llt_notarealtoken");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find("token_unknown"), std::string::npos) << result.output;
}

// Last: revoking B changes the store for the rest of the suite.
TEST_F(Rejection, ZRevokedDevice) {
  const Device b = LoadDevice(*agents_[1]);
  {
    auto store = store::SqliteHomeStore::Open(home_->dir() / "home.db");
    ASSERT_TRUE(store);
    ASSERT_TRUE((*store)->RevokeDevice(b.identity.customer, b.identity.site, b.identity.serial));
  }
  const std::string before = StoredState();
  auto response = Post(b.cert_file, b.key_file, Seal(MakeBatch(b.identity, "REVOKED-1"), b.sign));
  EXPECT_EQ(response.status, 403);
  EXPECT_EQ(ErrorOf(response), Reject::kDeviceRevoked) << response.body;
  EXPECT_EQ(StoredState(), before);
}

}  // namespace
}  // namespace lifeline::testing
