// The relay with a real agent sender in front and a home stand-in behind (an HTTPS server with the
// home's keys that opens batches, answers them signed and records what it got): the home's reply
// reaches the device byte for byte; a slow or absent home means 202 and the batch is forwarded later,
// once, also after the relay restarts; only devices of the gateway's site with the home CA's
// certificates get in.
#include "gateway/relay_service.h"

#include "agent/queue.h"
#include "agent/sender.h"
#include "common/clock.h"
#include "crypto/envelope.h"
#include "crypto/keys.h"
#include "crypto/pki.h"
#include "protocol/codec.h"
#include "support/temp_dir.h"
#include "transport/http_client.h"
#include "transport/https_server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>

namespace lifeline::gateway {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

bool Eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (condition()) {
      return true;
    }
    std::this_thread::sleep_for(20ms);
  }
  return condition();
}

struct Issued {
  fs::path cert, key;
  std::string cert_pem;
};

/// The home stand-in: answers batches as the home would (signed), or slowly, or refuses.
class FakeHome {
 public:
  explicit FakeHome(const fs::path& pki) : paths_(pki) {
    seal_ = *crypto::ReadSealingKeyPair(paths_.home_seal_key);
    sign_ = *crypto::ReadSigningKeyPair(paths_.home_sign_key);
  }
  ~FakeHome() { Stop(); }

  void Start(std::uint16_t port = 0) {
    transport::ServerOptions options;
    options.listen = "127.0.0.1:" + std::to_string(port);
    options.tls = {paths_.home_cert.string(), paths_.home_key.string(), paths_.ca_cert.string()};
    options.client_certs = transport::ClientCertPolicy::kRequired;
    options.worker_threads = 4;
    auto started = transport::HttpsServer::Start(options, [this](const transport::HttpRequest& r) { return Handle(r); });
    ASSERT_TRUE(started);
    server_ = std::move(*started);
    port_ = server_->LocalPort();
  }
  void Stop() {
    if (server_) {
      server_->Stop(0ms);
      server_.reset();
    }
  }
  std::string url() const { return "https://localhost:" + std::to_string(port_); }
  std::uint16_t port() const { return port_; }

  std::atomic<int> delay_ms{0};
  std::atomic<bool> refuse{false};

  struct Received {
    std::string batch_id;
    std::vector<std::string> message_ids;
    std::string relayed_cert_pem;
    std::string peer_pem;
    std::string received_at;
  };
  std::vector<Received> received() {
    std::lock_guard lock(mutex_);
    return received_;
  }
  std::vector<std::string> MessageIds() {
    std::vector<std::string> ids;
    for (const auto& r : received()) {
      ids.insert(ids.end(), r.message_ids.begin(), r.message_ids.end());
    }
    return ids;
  }

 private:
  transport::HttpResponse Handle(const transport::HttpRequest& request) {
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms.load()));
    transport::HttpResponse response;
    if (request.target == "/v1/tickets") {
      response.body = R"({"version":1,"tickets":[]})";
      Sign(response);
      return response;
    }
    if (refuse) {
      response.status = protocol::HttpStatus(protocol::Reject::kDeviceRevoked);
      response.body = protocol::EncodeError(protocol::Reject::kDeviceRevoked, "device is revoked");
      return response;
    }
    const std::vector<std::uint8_t> sealed(request.body.begin(), request.body.end());
    auto opened = crypto::OpenEnvelope(sealed, seal_);
    std::string why;
    auto batch = opened ? protocol::DecodeBatch(opened->batch_bytes, &why) : Result<protocol::Batch>(protocol::Reject::kUnsealFailed);
    if (!batch) {
      response.status = 400;
      response.body = protocol::EncodeError(protocol::Reject::kMalformedBody, "bad");
      return response;
    }
    Received got{.batch_id = batch->batch_id};
    protocol::BatchReply reply{.batch_id = batch->batch_id, .received_at_ms = 1};
    for (const auto& m : batch->messages) {
      got.message_ids.push_back(m.id);
      reply.results.push_back({.message_id = m.id, .status = protocol::MessageStatus::kAccepted, .ticket = "LL-000042"});
    }
    auto header = [&](const char* name) {
      auto found = request.headers.find(name);
      return found == request.headers.end() ? std::string() : found->second;
    };
    auto cert = crypto::Base64Decode(header("lifeline-relayed-certificate"));
    got.relayed_cert_pem = cert ? std::string(cert->begin(), cert->end()) : "";
    got.peer_pem = request.peer ? request.peer->pem : "";
    got.received_at = header("lifeline-relay-received-at");
    {
      std::lock_guard lock(mutex_);
      received_.push_back(got);
    }
    response.body = protocol::EncodeReply(reply);
    Sign(response);
    return response;
  }
  void Sign(transport::HttpResponse& response) {
    const auto signature = crypto::Sign(crypto::AsBytes(response.body), sign_);
    response.headers.emplace_back("Lifeline-Signature", crypto::Base64Encode(signature));
  }

  crypto::PkiPaths paths_;
  crypto::SealingKeyPair seal_;
  crypto::SigningKeyPair sign_;
  std::unique_ptr<transport::HttpsServer> server_;
  std::uint16_t port_ = 0;
  std::mutex mutex_;
  std::vector<Received> received_;
};

class RelayServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(crypto::InitPki(dir_ / "pki"));
    ca_pem_ = *crypto::ReadSmallFile(pki_.ca_cert, 1 << 20);
    ca_key_pem_ = *crypto::ReadSmallFile(pki_.ca_key, 1 << 20, true);
    home_ = std::make_unique<FakeHome>(dir_ / "pki");
    home_->Start();
    gateway_ = IssuePeer(gateway_identity_, crypto::PeerKind::kGateway, "gateway");
    device_ = IssuePeer(device_identity_, crypto::PeerKind::kDevice, "device");
    device_sign_ = crypto::GenerateSigningKeyPair();
  }

  Issued IssuePeer(const protocol::DeviceIdentity& identity, crypto::PeerKind kind, const std::string& name,
                   const std::string& ca_pem = "", const std::string& ca_key_pem = "") {
    const std::string key = crypto::GeneratePrivateKeyPem();
    auto csr = crypto::MakeCsr(key, identity, kind);
    auto issued = kind == crypto::PeerKind::kGateway
                      ? crypto::IssueGatewayCertificate(ca_pem_, ca_key_pem_, *csr, identity, {"127.0.0.1"}, 30)
                      : crypto::IssueDeviceCertificate(ca_pem.empty() ? ca_pem_ : ca_pem,
                                                       ca_key_pem.empty() ? ca_key_pem_ : ca_key_pem, *csr, identity, 30);
    EXPECT_TRUE(issued);
    Issued out{dir_ / (name + ".crt"), dir_ / (name + ".key"), issued->pem};
    EXPECT_TRUE(crypto::WriteFileAtomically(out.cert, issued->pem, 0644));
    EXPECT_TRUE(crypto::WritePrivateKeyPem(out.key, key));
    return out;
  }

  RelayOptions Options() {
    RelayOptions options;
    options.gateway = gateway_identity_;
    options.queue_path = dir_ / "gateway" / "relay.db";
    options.wait = 1500ms;
    options.request_timeout = 5000ms;
    options.retry_min = 100ms;
    options.retry_max = 300ms;
    options.home_url = home_->url();
    options.ca_cert = pki_.ca_cert;
    options.gateway_cert = gateway_.cert;
    options.gateway_key = gateway_.key;
    return options;
  }

  void StartRelay(RelayOptions options) {
    auto started = RelayService::Start(std::move(options));
    ASSERT_TRUE(started);
    relay_ = std::move(*started);
  }

  /// An agent sender pointed at the relay, with its own queue holding `alerts` alerts.
  struct Agent {
    std::unique_ptr<agent::AgentQueue> queue;
    std::unique_ptr<agent::Sender> sender;
  };
  Agent MakeAgent(const std::string& name, int alerts, const Issued& cert, const protocol::DeviceIdentity& identity) {
    Agent agent;
    auto queue = agent::AgentQueue::Open(dir_ / (name + "-queue.db"));
    EXPECT_TRUE(queue);
    agent.queue = std::move(*queue);
    std::vector<protocol::Message> drafts;
    for (int i = 0; i < alerts; ++i) {
      protocol::Message m{.type = protocol::MessageType::kAlert, .timestamp_ms = 1};
      m.alert = {"SIM-" + std::to_string(i), protocol::Severity::kCritical, "disk failed", "test"};
      drafts.push_back(m);
    }
    EXPECT_TRUE(agent.queue->Enqueue(drafts));
    const crypto::PkiPaths home_keys(dir_ / "pki");
    agent::SenderKeys keys{.device_sign = device_sign_,
                           .home_seal_public = crypto::ReadSealingKeyPair(home_keys.home_seal_key)->public_key,
                           .home_sign_public = crypto::ReadSigningKeyPair(home_keys.home_sign_key)->public_key};
    transport::HttpClient client(transport::ClientTls{pki_.ca_cert.string(), cert.cert.string(), cert.key.string()});
    agent.sender = std::make_unique<agent::Sender>(*agent.queue, std::move(client), keys, identity,
                                                   "https://" + relay_->LocalAddress(), 100, 10000ms,
                                                   SystemClock::Instance());
    return agent;
  }

  testing::TempDir dir_;
  crypto::PkiPaths pki_{dir_ / "pki"};
  std::string ca_pem_, ca_key_pem_;
  std::unique_ptr<FakeHome> home_;
  const protocol::DeviceIdentity gateway_identity_{"ACME", "berlin-1", "gw-1", "lifeline-gateway"};
  const protocol::DeviceIdentity device_identity_{"ACME", "berlin-1", "SN-1", "M"};
  Issued gateway_, device_;
  crypto::SigningKeyPair device_sign_;
  std::unique_ptr<RelayService> relay_;
};

TEST_F(RelayServiceTest, HomeAnswersInTimeAndTheDeviceGetsItsSignedReply) {
  StartRelay(Options());
  auto agent = MakeAgent("a", 3, device_, device_identity_);
  auto sent = agent.sender->SendOnce();  // the sender checks the home's signature on the reply
  ASSERT_TRUE(sent) << sent.error().message();
  EXPECT_EQ(sent->sent, 3);
  EXPECT_EQ(*agent.queue->Depth(), 0);
  auto tickets = agent.queue->RecentTickets(10);
  ASSERT_TRUE(tickets);
  ASSERT_EQ(tickets->size(), 3u);
  EXPECT_EQ(tickets->front().ticket, "LL-000042");
  auto received = home_->received();
  ASSERT_EQ(received.size(), 1u);
  EXPECT_EQ(received[0].relayed_cert_pem, device_.cert_pem);  // the device's certificate, as verified
  EXPECT_EQ(received[0].peer_pem.empty(), false);
  auto peer = crypto::PeerFromCertificatePem(received[0].peer_pem);
  ASSERT_TRUE(peer);
  EXPECT_EQ(peer->kind, crypto::PeerKind::kGateway);  // the gateway's own certificate to the home
  EXPECT_FALSE(received[0].received_at.empty());
  EXPECT_TRUE(Eventually([&] { return relay_->Stats().queue_depth == 0; }, 2s));
  EXPECT_EQ(relay_->Stats().answered, 1);

  // Ticket queries pass through with the device's certificate.
  transport::HttpClient client(transport::ClientTls{pki_.ca_cert.string(), device_.cert.string(), device_.key.string()});
  auto listed = client.Send({.method = "GET", .url = "https://" + relay_->LocalAddress() + "/v1/tickets"});
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->status, 200);
  EXPECT_EQ(listed->body, R"({"version":1,"tickets":[]})");
  EXPECT_TRUE(listed->headers.contains("lifeline-signature"));
}

TEST_F(RelayServiceTest, SlowHomeMeans202ThenTheBatchIsForwardedOnceAndTheLateReplyDropped) {
  // Each upload the home took is reported once (the gateway audits it), with the device's hand-over time.
  std::mutex uploads_mutex;
  std::vector<std::pair<std::string, std::int64_t>> uploads;  // device, received_at_ms
  auto options = Options();
  const std::int64_t before_ms = SystemClock::Instance().NowUnixMillis();
  options.on_uploaded = [&](const std::string& device, std::int64_t received_at_ms, std::size_t bytes,
                            std::int64_t attempts) {
    EXPECT_GT(bytes, 0u);
    EXPECT_GE(attempts, 1);
    std::lock_guard lock(uploads_mutex);
    uploads.emplace_back(device, received_at_ms);
  };
  StartRelay(std::move(options));
  home_->delay_ms = 2500;  // longer than relay.wait
  auto agent = MakeAgent("a", 2, device_, device_identity_);
  auto sent = agent.sender->SendOnce();
  ASSERT_TRUE(sent) << sent.error().message();
  EXPECT_EQ(sent->sent, 2);
  EXPECT_EQ(*agent.queue->Depth(), 0);  // delivered to the gateway: it holds them
  EXPECT_EQ(relay_->Stats().held, 1);
  EXPECT_TRUE(Eventually([&] { return relay_->Stats().queue_depth == 0; }, 10s));
  EXPECT_EQ(home_->MessageIds().size(), 2u);
  EXPECT_EQ(relay_->Stats().forwarded, 1);
  std::lock_guard lock(uploads_mutex);
  ASSERT_EQ(uploads.size(), 1u);
  EXPECT_NE(uploads[0].first.find(device_identity_.serial), std::string::npos) << uploads[0].first;
  EXPECT_GE(uploads[0].second, before_ms);
}

TEST_F(RelayServiceTest, AbsentHomeAndARelayRestartLoseNothingAndRepeatNothing) {
  const std::uint16_t home_port = home_->port();
  home_->Stop();
  auto options = Options();
  StartRelay(options);
  auto first = MakeAgent("a", 3, device_, device_identity_);
  ASSERT_TRUE(first.sender->SendOnce());
  EXPECT_EQ(*first.queue->Depth(), 0);
  EXPECT_EQ(relay_->Stats().held, 1);
  // The gateway restarts while the home is still away; what it held is still there.
  relay_->Stop();
  relay_.reset();
  StartRelay(options);
  EXPECT_EQ(relay_->Stats().queue_depth, 1);
  auto second = MakeAgent("b", 2, device_, device_identity_);
  ASSERT_TRUE(second.sender->SendOnce());
  EXPECT_EQ(relay_->Stats().queue_depth, 2);
  home_->Start(home_port);
  ASSERT_TRUE(Eventually([&] { return relay_->Stats().queue_depth == 0; }, 10s));
  auto ids = home_->MessageIds();
  EXPECT_EQ(ids.size(), 5u);
  std::set<std::string> unique(ids.begin(), ids.end());
  EXPECT_EQ(unique.size(), 5u);
  auto received = home_->received();
  ASSERT_EQ(received.size(), 2u);
  EXPECT_EQ(received[0].message_ids.size(), 3u);  // oldest first
}

TEST_F(RelayServiceTest, HomeRefusalReachesAWaitingDevice) {
  StartRelay(Options());
  home_->refuse = true;
  auto agent = MakeAgent("a", 1, device_, device_identity_);
  auto sent = agent.sender->SendOnce();
  ASSERT_FALSE(sent);
  EXPECT_EQ(sent.error(), protocol::Reject::kDeviceRevoked);
  EXPECT_EQ(*agent.queue->Depth(), 1);  // the device keeps its messages
  EXPECT_TRUE(Eventually([&] { return relay_->Stats().queue_depth == 0; }, 2s));
}

TEST_F(RelayServiceTest, OnlyDevicesOfTheSiteWithTheHomesCertificatesGetIn) {
  StartRelay(Options());
  // A device of another site of the same customer: refused at the gateway.
  const protocol::DeviceIdentity elsewhere{"ACME", "hamburg", "SN-9", "M"};
  const Issued other_site = IssuePeer(elsewhere, crypto::PeerKind::kDevice, "elsewhere");
  auto agent = MakeAgent("a", 1, other_site, elsewhere);
  auto sent = agent.sender->SendOnce();
  ASSERT_FALSE(sent);
  EXPECT_EQ(sent.error(), protocol::Reject::kIdentityMismatch);
  EXPECT_EQ(*agent.queue->Depth(), 1);
  // A certificate from another CA does not get through the handshake.
  testing::TempDir other;
  ASSERT_TRUE(crypto::InitPki(other / "pki"));
  const crypto::PkiPaths foreign(other / "pki");
  const Issued intruder = IssuePeer(device_identity_, crypto::PeerKind::kDevice, "intruder",
                                    *crypto::ReadSmallFile(foreign.ca_cert, 1 << 20),
                                    *crypto::ReadSmallFile(foreign.ca_key, 1 << 20, true));
  auto refused = MakeAgent("b", 1, intruder, device_identity_);
  EXPECT_FALSE(refused.sender->SendOnce());
  EXPECT_EQ(*refused.queue->Depth(), 1);
  EXPECT_TRUE(home_->received().empty());
  EXPECT_EQ(relay_->Stats().received, 0);
}

TEST_F(RelayServiceTest, AFullQueueRefusesClearly) {
  home_->Stop();
  auto options = Options();
  options.max_queue_bytes = 4096;
  StartRelay(options);
  auto agent = MakeAgent("a", 30, device_, device_identity_);
  auto sent = agent.sender->SendOnce();
  ASSERT_FALSE(sent);
  EXPECT_EQ(*agent.queue->Depth(), 30);
  EXPECT_EQ(relay_->Stats().refused, 1);
  EXPECT_EQ(relay_->Stats().queue_depth, 0);
}

}  // namespace
}  // namespace lifeline::gateway
