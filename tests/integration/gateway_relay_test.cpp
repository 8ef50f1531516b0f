// The relay end to end with real processes: `lifeline home run`, `lifeline gateway relay` (the relay
// alone) enrolled with a gateway token, and `lifeline-agent` pointed at the gateway. Alerts get their
// tickets (and the agent its ticket numbers) through the gateway; with the home stopped the agent
// gets 202s, the gateway restarts meanwhile, and when the home is back every alert arrives exactly
// once. A device certificate from another CA does not get into the gateway, and a device
// certificate cannot relay at the home: only gateway certificates can.
#include "crypto/keys.h"
#include "crypto/pki.h"
#include "protocol/codec.h"
#include "support/harness.h"
#include "transport/http_client.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <set>
#include <string>

namespace lifeline::testing {
namespace {

int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  ::close(fd);
  return ntohs(address.sin_port);
}

int Count(const std::string& text, const std::string& what) {
  int count = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) {
    ++count;
  }
  return count;
}

/// The relay alone, as `lifeline gateway relay` runs it, enrolled with the home as gateway gw-1.
class RelayProcess {
 public:
  RelayProcess(const fs::path& dir, const TestHome& home) : dir_(dir), port_(FreePort()) {
    fs::create_directories(dir_ / "pki");
    const crypto::PkiPaths home_pki(home.pki_dir());
    for (const auto& f : {home_pki.ca_cert, home_pki.home_seal_public, home_pki.home_sign_public}) {
      fs::copy_file(f, dir_ / "pki" / f.filename(), fs::copy_options::overwrite_existing);
    }
    WriteFile(config(), fmt::format(R"([gateway]
customer = "ACME"
site = "berlin-1"
name = "gw-1"
data_dir = "{0}"
[home]
url = "{1}"
timeout = "5s"
[listen]
devices = "127.0.0.1:{2}"
devices_names = ["127.0.0.1", "localhost"]
[relay]
wait = "2s"
)",
                                    dir_.string(), home.ingest_url(), port_));
  }
  fs::path config() const { return dir_ / "gateway.toml"; }
  std::string url() const { return fmt::format("https://127.0.0.1:{}", port_); }
  std::string LogText() const { return ReadFile(dir_ / "relay.log"); }

  void Enroll(const TestHome& home) {
    auto token = RunLifeline({"home", "enroll-token", "--config", home.config().string(), "--customer", "ACME",
                              "--site", "berlin-1", "--name", "gw-1", "--gateway"});
    ASSERT_EQ(token.exit_code, 0) << token.output;
    const auto at = token.output.find("llt_");
    ASSERT_NE(at, std::string::npos) << token.output;
    const std::string value = token.output.substr(at, token.output.find('\n', at) - at);
    auto enrolled = RunLifeline({"gateway", "enroll", "--config", config().string(), "--token", value});
    ASSERT_EQ(enrolled.exit_code, 0) << enrolled.output;
    EXPECT_NE(enrolled.output.find("enrolled gateway ACME/berlin-1/gw-1"), std::string::npos) << enrolled.output;
  }
  void Start() {
    const int before = Count(LogText(), "listening on");
    auto process = cli::Subprocess::Spawn({LIFELINE_BINARY, "gateway", "relay", "--config", config().string()},
                                          dir_ / "relay.log");
    ASSERT_TRUE(process);
    process_.emplace(std::move(*process));
    ASSERT_TRUE(Eventually([&] { return Count(LogText(), "listening on") > before; }, std::chrono::seconds(20)))
        << LogText();
  }
  void Stop() {
    if (process_) {
      EXPECT_EQ(process_->Terminate(), 0) << LogText();
      process_.reset();
    }
  }

 private:
  fs::path dir_;
  int port_;
  std::optional<cli::Subprocess> process_;
};

// The agent's home.url becomes the gateway's device-facing URL.
void PointAtGateway(TestAgent& agent, const TestHome& home, const RelayProcess& relay) {
  std::string config = agent.ConfigText();
  const auto at = config.find(home.ingest_url());
  ASSERT_NE(at, std::string::npos);
  config.replace(at, home.ingest_url().size(), relay.url());
  agent.SetConfig(config);
}

void RaiseAlerts(TestAgent& agent, int first, int count) {
  for (int i = first; i < first + count; ++i) {
    agent.AppendLine(fmt::format("CRIT SIM={:06X} relayed failure {}", 0xB00000 + i, i));
  }
}

TEST(GatewayRelay, AlertsThroughTheGatewayArriveOnceAcrossHomeOutageAndGatewayRestart) {
  TempDir dir;
  MailSink mail(dir / "mail");
  TestHome home(dir / "home", mail.port());
  home.Start();
  RelayProcess relay(dir / "gateway", home);
  relay.Enroll(home);
  relay.Start();

  // The agent enrolls with the home, then sends through the gateway.
  TestAgent agent(dir / "agent", home, "SN-3001");
  auto enrolled = agent.Enroll(home.EnrollToken(agent.identity()));
  ASSERT_EQ(enrolled.exit_code, 0) << enrolled.output;
  PointAtGateway(agent, home, relay);
  agent.Start();

  // Home up: tickets, and the ticket numbers back at the agent.
  RaiseAlerts(agent, 0, 3);
  ASSERT_TRUE(Eventually([&] { return Count(agent.AgentLogText(), "ticket LL-") >= 3; }, std::chrono::seconds(30)))
      << agent.AgentLogText() << relay.LogText();
  EXPECT_EQ(home.Stat("alerts"), 3);
  // `lifeline check` passes through the gateway too (TLS pin, clock, a test message round trip).
  auto check = RunLifeline({"check", "--config", agent.config().string()});
  EXPECT_EQ(check.exit_code, 0) << check.output;

  // Home stopped: the gateway answers 202 and holds the batches.
  home.Stop();
  RaiseAlerts(agent, 3, 4);
  ASSERT_TRUE(Eventually([&] { return Count(agent.AgentLogText(), "holds batch") >= 1; }, std::chrono::seconds(30)))
      << agent.AgentLogText() << relay.LogText();
  // The gateway restarts; alerts raised meanwhile wait at the agent, then go to the gateway.
  relay.Stop();
  RaiseAlerts(agent, 7, 3);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  relay.Start();
  ASSERT_TRUE(Eventually(
      [&] {
        auto status = RunLifeline({"agent", "status", "--config", agent.config().string()});
        const auto depth = status.output.find("queue depth:");
        return depth != std::string::npos && std::stol(status.output.substr(depth + 12)) == 0 &&
               Count(agent.AgentLogText(), "holds batch") >= 2;
      },
      std::chrono::seconds(40)))
      << agent.AgentLogText() << relay.LogText();

  // Home back: every alert exactly once.
  home.Start();
  ASSERT_TRUE(Eventually([&] { return home.Stat("alerts") >= 10; }, std::chrono::seconds(60)))
      << relay.LogText() << ReadFile(home.log_file());
  std::this_thread::sleep_for(std::chrono::seconds(2));  // room for a wrong extra to arrive
  EXPECT_EQ(home.Stat("alerts"), 10);
  EXPECT_EQ(home.Stat("tickets"), 10);
  auto tickets = home.Admin("/v1/tickets?limit=1000").at("tickets").as_array();
  std::set<std::string> codes;
  for (const auto& t : tickets) {
    codes.insert(std::string(t.at("code").as_string()));
    EXPECT_EQ(t.at("occurrences").to_number<int>(), 1) << t.at("code").as_string();
  }
  EXPECT_EQ(codes.size(), 10u);
  EXPECT_NE(relay.LogText().find("home reachable again"), std::string::npos) << relay.LogText();

  // The ticket numbers of held alerts come through `lifeline agent tickets`, through the gateway too.
  auto listed = RunLifeline({"agent", "tickets", "--config", agent.config().string()});
  EXPECT_EQ(listed.exit_code, 0) << listed.output;
  EXPECT_EQ(Count(listed.output, "LL-"), 10) << listed.output;

  agent.Stop();
  relay.Stop();
  home.Stop();
}

TEST(GatewayRelay, ForeignDeviceCertificatesAndDeviceRelaysAreRefused) {
  TempDir dir;
  MailSink mail(dir / "mail");
  TestHome home(dir / "home", mail.port());
  home.Start();
  RelayProcess relay(dir / "gateway", home);
  relay.Enroll(home);
  relay.Start();
  TestAgent agent(dir / "agent", home, "SN-3002");
  auto enrolled = agent.Enroll(home.EnrollToken(agent.identity()));
  ASSERT_EQ(enrolled.exit_code, 0) << enrolled.output;
  const crypto::PkiPaths home_pki(home.pki_dir());

  // A device certificate from another CA (same identity): the gateway's handshake refuses it.
  ASSERT_TRUE(crypto::InitPki(dir / "other-pki"));
  const crypto::PkiPaths other(dir / "other-pki");
  const std::string key = crypto::GeneratePrivateKeyPem();
  auto foreign = crypto::IssueDeviceCertificate(*crypto::ReadSmallFile(other.ca_cert, 1 << 20),
                                                *crypto::ReadSmallFile(other.ca_key, 1 << 20, true),
                                                *crypto::MakeCsr(key, agent.identity()), agent.identity(), 30);
  ASSERT_TRUE(foreign);
  ASSERT_TRUE(crypto::WriteFileAtomically(dir / "foreign.crt", foreign->pem, 0644));
  ASSERT_TRUE(crypto::WritePrivateKeyPem(dir / "foreign.key", key));
  transport::HttpClient intruder(
      {home_pki.ca_cert.string(), (dir / "foreign.crt").string(), (dir / "foreign.key").string()});
  auto refused = intruder.Send({.url = relay.url() + "/v1/batches", .content_type = "application/octet-stream",
                                .body = "sealed", .timeout = std::chrono::seconds(5)});
  EXPECT_FALSE(refused) << refused->status << " " << refused->body;

  // The enrolled device's own certificate may not relay at the home: only gateway certificates can.
  const std::string device_pem = ReadFile(agent.pki_dir() / "device.crt");
  transport::HttpClient device({home_pki.ca_cert.string(), (agent.pki_dir() / "device.crt").string(),
                                (agent.pki_dir() / "device.key").string()});
  auto relayed = device.Send({.url = home.ingest_url() + "/v1/batches",
                              .content_type = "application/vnd.lifeline.sealed-batch",
                              .body = "sealed",
                              .headers = {{"Lifeline-Relayed-Certificate", crypto::Base64Encode(crypto::AsBytes(device_pem))}},
                              .timeout = std::chrono::seconds(5)});
  ASSERT_TRUE(relayed);
  EXPECT_EQ(relayed->status, 403) << relayed->body;
  EXPECT_NE(relayed->body.find("identity_mismatch"), std::string::npos) << relayed->body;
  EXPECT_NE(relayed->body.find("only a gateway"), std::string::npos) << relayed->body;
  EXPECT_EQ(home.Stat("alerts"), 0);

  relay.Stop();
  home.Stop();
}

// A device that reaches nothing but its gateway enrolls through it (its keys made on the device, the
// token checked by the home), then sends through it. A device of another site, and a gateway, cannot
// enroll through it; without a certificate nothing but enrollment gets past it.
TEST(GatewayRelay, DevicesEnrollThroughTheGatewayOfTheirOwnSiteOnly) {
  TempDir dir;
  MailSink mail(dir / "mail");
  TestHome home(dir / "home", mail.port());
  home.Start();
  RelayProcess relay(dir / "gateway", home);
  relay.Enroll(home);
  relay.Start();

  TestAgent agent(dir / "agent", home, "SN-3003");
  PointAtGateway(agent, home, relay);
  auto enrolled = agent.Enroll(home.EnrollToken(agent.identity()));
  ASSERT_EQ(enrolled.exit_code, 0) << enrolled.output << relay.LogText();
  EXPECT_NE(enrolled.output.find("enrolled device ACME/berlin-1/SN-3003"), std::string::npos) << enrolled.output;
  EXPECT_NE(relay.LogText().find("relayed the enrollment of ACME/berlin-1/SN-3003"), std::string::npos)
      << relay.LogText();
  EXPECT_NE(ReadFile(home.log_file()).find("enrolled device ACME/berlin-1/SN-3003 via gateway ACME/berlin-1/gw-1"),
            std::string::npos)
      << ReadFile(home.log_file());
  agent.Start();
  RaiseAlerts(agent, 0, 1);
  ASSERT_TRUE(Eventually([&] { return Count(agent.AgentLogText(), "ticket LL-") >= 1; }, std::chrono::seconds(30)))
      << agent.AgentLogText() << relay.LogText();
  EXPECT_EQ(home.Stat("alerts"), 1);
  agent.Stop();

  // A device of another site: refused at the gateway; its token is not used up at the home.
  TestAgent other(dir / "other", home, "SN-9");
  std::string other_config = other.ConfigText();
  other_config.replace(other_config.find("berlin-1"), 8, "paris-7");
  other.SetConfig(other_config);
  const std::string other_token = home.EnrollToken({"ACME", "paris-7", "SN-9", "VSP G900"});
  PointAtGateway(other, home, relay);
  auto refused = other.Enroll(other_token);
  EXPECT_NE(refused.exit_code, 0) << refused.output;
  EXPECT_NE(refused.output.find("relays only for devices of ACME/berlin-1"), std::string::npos) << refused.output;
  EXPECT_EQ(ReadFile(home.log_file()).find("SN-9"), std::string::npos) << ReadFile(home.log_file());

  // The home checks the same on its own: the gateway's certificate may not pass on a device of
  // another site, even with that device's valid token.
  const crypto::PkiPaths home_pki(home.pki_dir());
  const fs::path gateway_pki = dir / "gateway" / "pki";
  ASSERT_TRUE(fs::exists(gateway_pki / "gateway.crt"));
  transport::HttpClient as_relay(
      {home_pki.ca_cert.string(), (gateway_pki / "gateway.crt").string(), (gateway_pki / "gateway.key").string()});
  const std::string device_key = crypto::GeneratePrivateKeyPem();
  const protocol::DeviceIdentity paris{"ACME", "paris-7", "SN-9", "VSP G900"};
  protocol::EnrollRequest foreign_site{.token = other_token,
                                       .device = paris,
                                       .csr_pem = *crypto::MakeCsr(device_key, paris),
                                       .signing_public_key = crypto::Base64Encode(crypto::GenerateSigningKeyPair().public_key)};
  auto home_refused = as_relay.Send({.url = home.ingest_url() + "/v1/enroll", .content_type = "application/json",
                                     .body = protocol::EncodeEnrollRequest(foreign_site),
                                     .timeout = std::chrono::seconds(5)});
  ASSERT_TRUE(home_refused);
  EXPECT_EQ(home_refused->status, 403) << home_refused->body;
  EXPECT_NE(home_refused->body.find("may not relay the enrollment of device ACME/paris-7/SN-9"), std::string::npos)
      << home_refused->body;

  // A gateway does not enroll through another gateway.
  transport::HttpClient anonymous({home_pki.ca_cert.string()});
  protocol::EnrollRequest as_gateway{.token = "llt_x",
                                     .device = {.customer = "ACME", .site = "berlin-1", .serial = "gw-2"},
                                     .csr_pem = "x",
                                     .signing_public_key = "x",
                                     .gateway = true};
  auto gateway_refused = anonymous.Send({.url = relay.url() + "/v1/enroll", .content_type = "application/json",
                                         .body = protocol::EncodeEnrollRequest(as_gateway),
                                         .timeout = std::chrono::seconds(5)});
  ASSERT_TRUE(gateway_refused);
  EXPECT_EQ(gateway_refused->status, 403) << gateway_refused->body;
  EXPECT_NE(gateway_refused->body.find("enrolls with the home itself"), std::string::npos) << gateway_refused->body;

  // Without a certificate, batches and ticket queries are refused (enrollment needs none).
  for (const char* target : {"/v1/batches", "/v1/tickets"}) {
    const bool post = std::string_view(target) == "/v1/batches";
    auto answer = anonymous.Send({.method = post ? "POST" : "GET",
                                  .url = relay.url() + target,
                                  .content_type = post ? "application/octet-stream" : "",
                                  .body = post ? "sealed" : "",
                                  .timeout = std::chrono::seconds(5)});
    ASSERT_TRUE(answer) << target;
    EXPECT_EQ(answer->status, 401) << target << " " << answer->body;
    EXPECT_NE(answer->body.find("client_certificate_required"), std::string::npos) << answer->body;
  }
  EXPECT_EQ(home.Stat("alerts"), 1);

  relay.Stop();
  home.Stop();
}

}  // namespace
}  // namespace lifeline::testing
